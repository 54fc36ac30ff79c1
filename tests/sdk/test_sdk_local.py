"""LocalDeployment: real `kserve-llmd sim` and `kserve-llmd router` subprocesses; no orphans after delete."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from kserve_llmd.errors import NotReadyError
from kserve_llmd.sdk import LocalDeployment, PoolSpec, RouterSpec


def chat(endpoint: str) -> dict[str, object]:
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    request = urllib.request.Request(f"{endpoint}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_render_is_the_process_plan() -> None:
    plan = LocalDeployment(prefill=PoolSpec(replicas=1), decode=PoolSpec(replicas=2), time_scale=0).render()
    assert [step["name"] for step in plan] == ["prefill-engines", "decode-engines", "router"]
    assert plan[1]["command"][plan[1]["command"].index("--engines") + 1] == "2"
    assert "pd-decider" in plan[2]["command"]


def test_pd_deployment_serves_and_leaves_no_process_behind() -> None:
    dep = LocalDeployment(prefill=PoolSpec(replicas=1), decode=PoolSpec(replicas=1), time_scale=0,
                          router=RouterSpec(preset="pd-decider"))
    with dep:
        assert [e["role"] for e in dep.engines] == ["prefill", "decode"]
        assert chat(dep.endpoint)["object"] == "chat.completion"
        pids = [p.pid for p in dep.processes]
        assert len(pids) == 3
    assert not any(alive(pid) for pid in pids)
    with pytest.raises(NotReadyError):
        _ = dep.endpoint


def test_a_process_that_dies_is_reported_with_its_log() -> None:
    dep = LocalDeployment(profile="no-such-profile", time_scale=0)
    with pytest.raises(NotReadyError, match="engines exited with code"):
        dep.apply()
    assert dep.processes == ()
