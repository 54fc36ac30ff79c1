"""The cluster target against the Kubernetes API double (real kubernetes client, real CRD validation): the
deploy → teardown steps, cleanup of a deployment that never becomes ready, and both traffic-split paths."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from kserve_llmd.errors import NotReadyError
from kserve_llmd.kube.ops import KubeConfig
from kserve_llmd.rollout import steps
from kserve_llmd.rollout.canary import split
from kserve_llmd.rollout.cluster import ClusterBackend
from kserve_llmd.rollout.spec import DeploySpec
from kserve_llmd.rollout.state import DeploymentState
from kserve_llmd.sdk import LocalDeployment
from kserve_llmd.testing.kube_double import KubeApiDouble

NS = "llm"


@pytest.fixture(scope="module")
def double() -> Iterator[KubeApiDouble]:
    with KubeApiDouble(tick_interval=0.01) as server:
        yield server


@pytest.fixture
def backend(double: KubeApiDouble) -> ClusterBackend:
    return ClusterBackend(kube=KubeConfig(host=double.url), poll=0.01)


def test_deploy_and_teardown_steps(double: KubeApiDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KSERVE_LLMD_KUBE_HOST", double.url)  # what a KFP pod's KubeConfig.detect would find
    deployed = steps.deploy(name="stable", target="cluster", namespace=NS, model="Qwen/Qwen3-0.6B",
                            ready_timeout_s=30.0)
    assert deployed.endpoint == f"http://stable-{NS}.example.com"
    isvc = double.get("InferenceService", "stable", NS)
    assert isvc is not None
    assert "round-robin" in isvc["spec"]["transformer"]["containers"][0]["args"]
    state = DeploymentState.from_json(deployed.state)
    assert state.deployment["model_uri"] == "hf://Qwen/Qwen3-0.6B"
    steps.teardown(deployed.state)  # from the JSON alone, as the teardown step does
    assert double.get("InferenceService", "stable", NS) is None


def test_a_deployment_that_fails_is_deleted(double: KubeApiDouble, backend: ClusterBackend) -> None:
    double.fail("InferenceService", "sick", NS, condition="PredictorReady", reason="ImagePullBackOff",
                message="image not found")
    with pytest.raises(NotReadyError, match="condition PredictorReady is False"):
        backend.deploy(DeploySpec(name="sick", target="cluster", namespace=NS, ready_timeout_s=30.0))
    assert double.get("InferenceService", "sick", NS) is None


def test_llmisvc_split_sets_the_route_weights(double: KubeApiDouble, backend: ClusterBackend) -> None:
    specs = [DeploySpec(name=n, target="cluster", namespace=NS, format="llmisvc", ready_timeout_s=30.0)
             for n in ("cur", "cand")]
    current, candidate = (backend.deploy(spec) for spec in specs)
    try:
        backend.set_traffic(current, current.model, split(current, candidate, 10.0))
        routes = {n: double.get("LLMInferenceService", n, NS)["spec"]["router"]["route"]  # type: ignore[index]
                  for n in ("cur", "cand")}
        assert routes == {"cur": {"group": "cur", "weight": 90}, "cand": {"group": "cur", "weight": 10}}
        backend.set_traffic(current, current.model, None)
        assert double.get("LLMInferenceService", "cur", NS)["spec"]["router"]["route"] == {}  # type: ignore[index]
    finally:
        backend.delete(candidate)
        backend.delete(current)
    assert double.get("LLMInferenceService", "cur", NS) is None


def test_isvc_split_goes_to_the_router(double: KubeApiDouble, backend: ClusterBackend) -> None:
    with LocalDeployment(time_scale=0) as router:  # a real router behind the double's status.url
        double.set_url("InferenceService", "real", NS, router.endpoint)
        current = backend.deploy(DeploySpec(name="real", target="cluster", namespace=NS, ready_timeout_s=30.0))
        candidate = current.model_copy(update={"name": "cand", "engines": (router.engines[0]["url"],)})
        try:
            backend.set_traffic(current, "sim-model", split(current, candidate, 25.0))
            with urllib.request.urlopen(f"{router.endpoint}/admin/traffic", timeout=10) as response:
                table = json.loads(response.read())
            assert [(v["name"], v["weight"]) for v in table["sim-model"]] == [("real", 75.0), ("cand", 25.0)]
        finally:
            backend.delete(current)
