"""KubernetesDiscovery against the API double, through the real kubernetes client over loopback HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from kserve_llmd.kube.builders import discovery_rbac
from kserve_llmd.kube.discovery import KubernetesDiscovery
from kserve_llmd.router.interfaces import EndpointEvent
from kserve_llmd.testing.kube_double import KubeApiDouble

SELECTOR = "llm-d.ai/model=qwen"
LABELS = {"llm-d.ai/model": "qwen", "llm-d.ai/role": "decode"}


@pytest.fixture
def double() -> Iterator[KubeApiDouble]:
    with KubeApiDouble(tick_interval=None, validate=False) as server:
        yield server


@pytest.fixture
def api_client(double: KubeApiDouble) -> Iterator[Any]:
    client = double.api_client()
    yield client
    client.close()


class Gate:
    """An injected backoff sleep the test opens by hand (so changes can land while discovery is disconnected)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, delay: float) -> None:
        self.entered.set()
        await self.release.wait()


@pytest.fixture
async def gate() -> Gate:
    return Gate()


@pytest.fixture
async def discovery(api_client: Any, gate: Gate) -> AsyncIterator[KubernetesDiscovery]:
    d = KubernetesDiscovery("llm", SELECTOR, 8080, api_client=api_client, sleep=gate)
    yield d
    await d.aclose()


async def next_event(events: AsyncIterator[EndpointEvent]) -> tuple[str, str, str]:
    event = await asyncio.wait_for(anext(events), timeout=10)  # a hang guard, not a timing assertion
    return event.kind, event.endpoint.id, event.endpoint.role


async def test_initial_list_keeps_only_ready_pods_with_ips(
    double: KubeApiDouble, discovery: KubernetesDiscovery
) -> None:
    double.put_pod("ready", namespace="llm", labels=LABELS, ip="10.0.0.1", ready=True)
    double.put_pod("unready", namespace="llm", labels=LABELS, ip="10.0.0.2", ready=False)
    double.put_pod("no-ip", namespace="llm", labels=LABELS, ready=True)
    double.put_pod("other-model", namespace="llm", labels={"llm-d.ai/model": "x"}, ip="10.0.0.3", ready=True)
    double.put_pod("other-namespace", namespace="default", labels=LABELS, ip="10.0.0.4", ready=True)
    double.put_pod("done", namespace="llm", labels=LABELS, ip="10.0.0.5", ready=True, phase="Succeeded")
    await discovery.start()
    [endpoint] = discovery.snapshot()
    assert (endpoint.id, endpoint.url, endpoint.role) == ("10.0.0.1:8080", "http://10.0.0.1:8080", "decode")
    assert endpoint.kv_events == "tcp://10.0.0.1:5557"
    assert endpoint.kv_events_replay == "tcp://10.0.0.1:5558"  # the rendered runtimes' replay port
    assert endpoint.labels == LABELS


@pytest.mark.parametrize(("kv_events_port", "kv_replay_port", "expected"), [
    (6000, 6001, ("tcp://10.0.0.1:6000", "tcp://10.0.0.1:6001")),
    (5557, 0, ("tcp://10.0.0.1:5557", None)),  # no replay port: no history on join, gaps reset the endpoint
    (None, 5558, (None, None)),  # no publisher port: the router asks the engine, which names both sockets
])
async def test_kv_event_addresses_follow_the_configured_ports(
    double: KubeApiDouble, api_client: Any, kv_events_port: int | None, kv_replay_port: int,
    expected: tuple[str | None, str | None],
) -> None:
    double.put_pod("p", namespace="llm", labels=LABELS, ip="10.0.0.1", ready=True)
    d = KubernetesDiscovery("llm", SELECTOR, 8080, api_client=api_client, kv_events_port=kv_events_port,
                            kv_replay_port=kv_replay_port)
    try:
        await d.start()
        [endpoint] = d.snapshot()
        assert (endpoint.kv_events, endpoint.kv_events_replay) == expected
        events = aiter(d.watch())
        double.set_pod("p", namespace="llm", labels={"llm-d.ai/role": "prefill"})
        event = await asyncio.wait_for(anext(events), timeout=10)  # a hang guard, not a timing assertion
        assert (event.kind, event.endpoint.kv_events, event.endpoint.kv_events_replay) == ("updated", *expected)
    finally:
        await d.aclose()


async def test_pod_lifecycle_becomes_events(double: KubeApiDouble, discovery: KubernetesDiscovery) -> None:
    double.put_pod("p", namespace="llm", labels=LABELS, ip="10.0.0.1", ready=False)
    await discovery.start()
    assert discovery.snapshot() == []
    events = aiter(discovery.watch())
    double.set_pod("p", namespace="llm", ready=True)
    assert await next_event(events) == ("added", "10.0.0.1:8080", "decode")
    double.set_pod("p", namespace="llm", labels={"llm-d.ai/role": "prefill"})
    assert await next_event(events) == ("updated", "10.0.0.1:8080", "prefill")
    double.set_pod("p", namespace="llm", ready=False)
    assert await next_event(events) == ("removed", "10.0.0.1:8080", "prefill")
    double.set_pod("p", namespace="llm", ready=True)
    assert await next_event(events) == ("added", "10.0.0.1:8080", "prefill")
    double.set_pod("p", namespace="llm", labels={"llm-d.ai/model": "other"})  # leaves the selector
    assert await next_event(events) == ("removed", "10.0.0.1:8080", "prefill")
    double.put_pod("q", namespace="llm", labels={**LABELS, "llm-d.ai/role": "bogus"}, ip="10.0.0.2", ready=True)
    assert await next_event(events) == ("added", "10.0.0.2:8080", "both")
    double.delete_pod("q", namespace="llm")
    assert await next_event(events) == ("removed", "10.0.0.2:8080", "both")
    assert discovery.stats.lists == 1
    assert discovery.stats.errors == 0


async def test_dropped_watch_relists_and_misses_nothing(
    double: KubeApiDouble, discovery: KubernetesDiscovery, gate: Gate
) -> None:
    for i in range(3):
        double.put_pod(f"p{i}", namespace="llm", labels=LABELS, ip=f"10.0.0.{i}", ready=True)
    await discovery.start()
    assert len(discovery.snapshot()) == 3
    events = aiter(discovery.watch())
    await asyncio.to_thread(double.wait_for_watches)
    double.drop_watches(abrupt=True)
    await asyncio.wait_for(gate.entered.wait(), timeout=10)  # discovery is disconnected, in its backoff
    double.delete_pod("p0", namespace="llm")
    double.set_pod("p1", namespace="llm", labels={"llm-d.ai/role": "prefill"})
    double.put_pod("p3", namespace="llm", labels=LABELS, ip="10.0.0.3", ready=True)
    double.compact()  # the old resourceVersion is gone too: only a re-list can catch up
    gate.release.set()
    got = {await next_event(events) for _ in range(3)}
    assert got == {("removed", "10.0.0.0:8080", "decode"), ("updated", "10.0.0.1:8080", "prefill"),
                   ("added", "10.0.0.3:8080", "decode")}
    assert discovery.stats.lists == 2
    assert discovery.stats.errors == 1
    double.set_pod("p2", namespace="llm", ready=False)  # and the new watch is live
    assert await next_event(events) == ("removed", "10.0.0.2:8080", "decode")


async def test_expired_resource_version_relists(double: KubeApiDouble, discovery: KubernetesDiscovery) -> None:
    double.put_pod("p", namespace="llm", labels=LABELS, ip="10.0.0.1", ready=True)
    await discovery.start()
    assert len(discovery.snapshot()) == 1
    events = aiter(discovery.watch())
    await asyncio.to_thread(double.wait_for_watches)
    with double.store.lock:  # the change is compacted away before the open watch can send it: 410 Expired
        double.set_pod("p", namespace="llm", ready=False)
        double.compact()
    assert await next_event(events) == ("removed", "10.0.0.1:8080", "decode")
    assert discovery.stats.expired == 1
    assert discovery.stats.lists == 2


async def test_clean_end_of_watch_resumes_without_relisting(
    double: KubeApiDouble, discovery: KubernetesDiscovery
) -> None:
    await discovery.start()
    events = aiter(discovery.watch())  # no snapshot taken: the initial endpoints (none) would come as "added"
    double.put_pod("p", namespace="llm", labels=LABELS, ip="10.0.0.1", ready=True)
    assert await next_event(events) == ("added", "10.0.0.1:8080", "decode")
    await asyncio.to_thread(double.wait_for_watches)
    double.drop_watches(abrupt=False)
    double.delete_pod("p", namespace="llm")
    assert await next_event(events) == ("removed", "10.0.0.1:8080", "decode")
    assert discovery.stats.lists == 1
    assert discovery.stats.watches >= 2


async def test_uses_only_what_the_rendered_role_allows(double: KubeApiDouble, discovery: KubernetesDiscovery) -> None:
    await discovery.start()
    await discovery.aclose()
    role = next(o for o in discovery_rbac("router", "llm") if o["kind"] == "Role")
    [rule] = role["rules"]
    assert rule["apiGroups"] == [""]
    assert rule["resources"] == ["pods"]
    assert set(rule["verbs"]) == {"get", "list", "watch"}
    assert {(method, path) for method, path in double.requests} == {("GET", "/api/v1/namespaces/llm/pods")}


async def test_start_fails_loudly_without_rbac(double: KubeApiDouble, api_client: Any) -> None:
    from kserve_llmd.errors import KubeError

    double.forbidden.add(("pods", "llm"))
    d = KubernetesDiscovery("llm", SELECTOR, 8080, api_client=api_client)
    with pytest.raises(KubeError, match=r"cannot list pods .* HTTP 403"):
        await d.start()
    await d.aclose()
