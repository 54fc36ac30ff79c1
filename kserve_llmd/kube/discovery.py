"""``KubernetesDiscovery``: engine endpoints from the pods of one namespace, by label selector (list + watch).

Like llm-d's endpoint picker, an endpoint is a pod that is Ready (condition ``Ready=True``), has a ``podIP`` and is
not terminating; it leaves when it stops being any of those. Its id is ``podIP:port``, its role the
``llm-d.ai/role`` label (``prefill``, ``decode``, ``both``; missing or unknown → ``both``), its KV-event endpoint
``tcp://podIP:<kv_events_port>`` (None when no port is configured: the router then asks the engine) and that
publisher's replay ROUTER ``tcp://podIP:<kv_replay_port>`` (None without a replay port or without a KV-event port:
the router then has no history on join and resets the endpoint on a gap).

Protocol (the router's ``Discovery``)::

    await d.start()      LIST pods (fails loudly: no RBAC, wrong namespace) and start the watch loop
    d.snapshot()         the endpoints now
    d.watch()            every change after the last snapshot() taken before watching: added/updated/removed
                         (without a snapshot, the endpoints found by start() come first, as "added")
    await d.aclose()     stop the loop, end watch()

The loop WATCHes from the list's resourceVersion. A watch that ends cleanly (server timeout) resumes from the last
resourceVersion seen; ``410 Gone`` (Expired) or a broken connection re-LISTs (after a backoff that doubles up to
``backoff_max``) and the new list is diffed against the known endpoints, so no change is missed. The blocking
``kubernetes`` client runs in worker threads (``asyncio.to_thread``); ``aclose`` shuts the open stream down.

RBAC: get/list/watch on pods in the namespace (``kube/builders/rbac.py`` renders exactly that Role).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kserve_llmd.aio import stop_tasks
from kserve_llmd.errors import KubeError
from kserve_llmd.router.endpoints import endpoint_id
from kserve_llmd.router.interfaces import Endpoint, EndpointEvent
from kserve_llmd.types import ROLES, Role

log = logging.getLogger(__name__)
ROLE_LABEL = "llm-d.ai/role"
_CLOSED = object()


class _Expired(Exception):
    """The watch's resourceVersion is gone from the server's window (410): re-list."""


@dataclass(frozen=True, slots=True)
class PodEndpoint:
    """What discovery knows of one ready pod; turned into a fresh ``Endpoint`` for every event."""

    id: str
    url: str
    role: Role
    kv_events: str | None
    kv_events_replay: str | None
    labels: dict[str, str] = field(hash=False)

    def endpoint(self) -> Endpoint:
        return Endpoint(id=self.id, url=self.url, role=self.role, kv_events=self.kv_events,
                        kv_events_replay=self.kv_events_replay, labels=dict(self.labels))


@dataclass(slots=True)
class DiscoveryStats:
    lists: int = 0
    watches: int = 0
    expired: int = 0
    errors: int = 0


def pod_endpoint(
    pod: dict[str, Any], port: int, kv_events_port: int | None, scheme: str = "http", *,
    kv_replay_port: int | None = None,
) -> PodEndpoint | None:
    """The endpoint a pod stands for, or None when it cannot take traffic."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    ip = status.get("podIP")
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    if not ip or not ready or meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    labels: dict[str, str] = dict(meta.get("labels") or {})
    role_label = labels.get(ROLE_LABEL, "both")
    role: Role = role_label if role_label in ROLES else "both"
    if role_label not in ROLES:
        log.warning("pod %s: unknown %s=%r, treating it as 'both'", meta.get("name"), ROLE_LABEL, role_label)
    host = f"[{ip}]" if ":" in ip else ip
    url = f"{scheme}://{host}:{port}"
    kv_events = f"tcp://{host}:{kv_events_port}" if kv_events_port else None
    replay = f"tcp://{host}:{kv_replay_port}" if kv_events and kv_replay_port else None
    return PodEndpoint(endpoint_id(url), url, role, kv_events, replay, labels)


class KubernetesDiscovery:
    """See the module docstring. Construction does no I/O; ``api_client`` is a ``kubernetes.client.ApiClient``."""

    def __init__(
        self,
        namespace: str,
        label_selector: str,
        port: int,
        *,
        api_client: Any,
        kv_events_port: int | None = 5557,
        kv_replay_port: int | None = 5558,
        scheme: str = "http",
        watch_timeout: int = 300,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.namespace, self.label_selector, self.port = namespace, label_selector, port
        self._api_client = api_client
        self._kv_port, self._replay_port, self._scheme = kv_events_port, kv_replay_port, scheme
        self._watch_timeout = watch_timeout
        self._backoff = (backoff_initial, backoff_max)
        self._sleep = sleep
        self._pods: dict[str, PodEndpoint] = {}  # pod name → endpoint
        self._rv = ""
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._seq = 0
        self._snapshot_seq = 0
        self._watching = False
        self._task: asyncio.Task[None] | None = None
        self._response: Any = None
        self._closing = False
        self.stats = DiscoveryStats()

    # ------------------------------------------------------------------------------------------- protocol
    async def start(self) -> None:
        from kubernetes.client.rest import ApiException

        try:
            await self._list()
        except ApiException as exc:
            raise KubeError(f"cannot list pods in namespace {self.namespace!r} with selector "
                            f"{self.label_selector!r}: HTTP {exc.status} {exc.reason}") from None
        self._task = asyncio.create_task(self._run(), name=f"kube discovery {self.namespace}/{self.label_selector}")

    def snapshot(self) -> Sequence[Endpoint]:
        if not self._watching:
            self._snapshot_seq = self._seq
        return [pod.endpoint() for pod in self._pods.values()]

    async def watch(self) -> AsyncIterator[EndpointEvent]:
        self._watching = True
        while True:
            item = await self._queue.get()
            if item is _CLOSED:
                return
            seq, event = item
            if seq > self._snapshot_seq:
                yield event

    async def aclose(self) -> None:
        self._closing = True
        self._shutdown_response()
        await stop_tasks(self._task)
        self._task = None
        self._queue.put_nowait(_CLOSED)

    # ------------------------------------------------------------------------------------------- state
    def _emit(self, kind: str, pod: PodEndpoint) -> None:
        self._seq += 1
        self._queue.put_nowait((self._seq, EndpointEvent(kind, pod.endpoint())))

    def _set(self, name: str, new: PodEndpoint | None) -> None:
        old = self._pods.get(name)
        if new is None:
            if old is not None:
                del self._pods[name]
                self._emit("removed", old)
            return
        self._pods[name] = new
        if old is None:
            self._emit("added", new)
        elif old.id != new.id:
            self._emit("removed", old)
            self._emit("added", new)
        elif old != new or old.labels != new.labels:
            self._emit("updated", new)

    def _endpoint(self, pod: dict[str, Any]) -> PodEndpoint | None:
        return pod_endpoint(pod, self.port, self._kv_port, self._scheme, kv_replay_port=self._replay_port)

    async def _list(self) -> None:
        body = await asyncio.to_thread(self._call_list)
        self.stats.lists += 1
        seen = {}
        for pod in body.get("items") or []:
            seen[pod["metadata"]["name"]] = self._endpoint(pod)
        for name in list(self._pods):
            if name not in seen:
                self._set(name, None)
        for name, endpoint in seen.items():
            self._set(name, endpoint)
        self._rv = str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _call_list(self) -> dict[str, Any]:
        from kubernetes import client

        response = client.CoreV1Api(self._api_client).list_namespaced_pod(
            self.namespace, label_selector=self.label_selector, _preload_content=False)
        try:
            body: dict[str, Any] = json.loads(response.data)
            return body
        finally:
            response.release_conn()

    # ------------------------------------------------------------------------------------------- loop
    async def _run(self) -> None:
        import urllib3
        from kubernetes.client.rest import ApiException

        delay = self._backoff[0]
        need_list = False
        while not self._closing:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                await self._watch_once()
                delay = self._backoff[0]
            except _Expired:
                self.stats.expired += 1
                log.info("pod watch expired at resourceVersion %s: re-listing", self._rv)
                need_list = True
            except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                if self._closing:
                    return
                self.stats.errors += 1
                log.warning("pod watch failed (%s: %s); re-listing in %.2fs", type(exc).__name__, exc, delay)
                need_list = True
                await self._sleep(delay)
                delay = min(delay * 2, self._backoff[1])

    async def _watch_once(self) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        response = await asyncio.to_thread(self._open_watch)
        self.stats.watches += 1
        try:
            lines = iter_resp_lines(response)
            while True:
                line = await asyncio.to_thread(next, lines, None)
                if line is None:
                    return  # clean end (server timeout): resume from self._rv
                self._handle(json.loads(line))
        finally:
            self._response = None
            response.release_conn()

    def _open_watch(self) -> Any:
        from kubernetes import client

        response = client.CoreV1Api(self._api_client).list_namespaced_pod(
            self.namespace, label_selector=self.label_selector, watch=True, resource_version=self._rv,
            allow_watch_bookmarks=True, timeout_seconds=self._watch_timeout, _preload_content=False)
        self._response = response
        if self._closing:
            self._shutdown_response()
        return response

    def _shutdown_response(self) -> None:
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()

    def _handle(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Expired(obj.get("message", "expired"))
            raise ValueError(f"watch error: {obj.get('code')} {obj.get('reason')}: {obj.get('message')}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self._rv = str(version)
        if kind == "BOOKMARK":
            return
        name = obj["metadata"]["name"]
        self._set(name, None if kind == "DELETED" else self._endpoint(obj))
