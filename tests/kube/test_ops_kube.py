"""kube/ops.py through the real kubernetes client against the API double (real CRD validation, walked statuses)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kserve_llmd.errors import KubeError, ManifestValidationError, NotReadyError
from kserve_llmd.kube import ops
from kserve_llmd.kube.builders import LLMServiceSpec
from kserve_llmd.kube.render import render_objects
from kserve_llmd.testing.kube_double import KubeApiDouble

SPEC = LLMServiceSpec(name="qwen", model="Qwen/Qwen3-0.6B", model_uri="hf://Qwen/Qwen3-0.6B", namespace="llm")


@pytest.fixture(scope="module")
def double() -> Iterator[KubeApiDouble]:
    with KubeApiDouble(tick_interval=None) as server:
        yield server


@pytest.fixture
def api_client(double: KubeApiDouble) -> Iterator[Any]:
    client = double.api_client()
    yield client
    client.close()


class FakeTime:
    """Clock + sleep for wait_ready: each sleep advances the clock and ticks the double's controllers once."""

    def __init__(self, double: KubeApiDouble) -> None:
        self.now, self.double, self.sleeps = 0.0, double, 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1
        self.double.advance()


def test_apply_creates_then_merge_patches(double: KubeApiDouble, api_client: Any) -> None:
    objects = render_objects(SPEC)
    live = ops.apply(objects, api_client=api_client)
    assert [o["kind"] for o in live] == [o["kind"] for o in objects]
    assert all(o["metadata"]["namespace"] == "llm" for o in live if o["kind"] != "ClusterServingRuntime")
    changed = copy.deepcopy(objects)
    decode = next(o for o in changed if o["kind"] == "InferenceService" and o["metadata"]["name"] == "qwen")
    decode["spec"]["predictor"]["minReplicas"] = 3
    ops.apply(changed, api_client=api_client)
    now = ops.get_object("InferenceService", "qwen", api_client=api_client, namespace="llm")
    assert now is not None
    assert now["spec"]["predictor"]["minReplicas"] == 3
    assert now["metadata"]["generation"] == 2
    methods = [m for m, p in double.requests if p.endswith("/inferenceservices/qwen")]
    assert "PATCH" in methods


def test_invalid_object_is_refused_with_the_field(api_client: Any) -> None:
    isvc = copy.deepcopy(next(o for o in render_objects(SPEC) if o["kind"] == "InferenceService"))
    isvc["metadata"]["name"] = "broken"
    isvc["spec"]["predictor"]["replicaz"] = 2
    with pytest.raises(ManifestValidationError, match="replicaz") as info:
        ops.apply([isvc], api_client=api_client)
    assert info.value.param == "spec.predictor.replicaz"


def test_wait_ready_walks_conditions_to_a_url(double: KubeApiDouble, api_client: Any) -> None:
    ops.apply(render_objects(SPEC.model_copy(update={"name": "walk"})), api_client=api_client)
    fake = FakeTime(double)
    double.set_url("InferenceService", "walk", "llm", "http://walk.example")
    obj = ops.wait_ready("InferenceService", "walk", "llm", 60, api_client=api_client, clock=fake.clock,
                         sleep=fake.sleep, poll=1)
    assert obj["status"]["url"] == "http://walk.example"
    types = [c["type"] for c in obj["status"]["conditions"]]
    assert types == ["PredictorReady", "TransformerReady", "IngressReady", "Ready"]
    assert fake.sleeps == 4  # one stage per tick


def test_wait_ready_names_the_missing_condition_when_held(double: KubeApiDouble, api_client: Any) -> None:
    double.hold("LLMInferenceService", "held", "llm")
    ops.apply(render_objects(SPEC.model_copy(update={"name": "held", "format": "llmisvc"})), api_client=api_client)
    fake = FakeTime(double)
    with pytest.raises(NotReadyError, match="not ready after 30s: condition MainWorkloadReady is Unknown") as info:
        ops.wait_ready("LLMInferenceService", "held", "llm", 30, api_client=api_client, clock=fake.clock,
                       sleep=fake.sleep, poll=5)
    assert info.value.param == "MainWorkloadReady"


def test_wait_ready_fails_fast_with_the_reason(double: KubeApiDouble, api_client: Any) -> None:
    double.fail("InferenceService", "oom", "llm", condition="PredictorReady", reason="OOMKilled",
                message="container kserve-container was OOM killed")
    ops.apply(render_objects(SPEC.model_copy(update={"name": "oom"})), api_client=api_client)
    fake = FakeTime(double)
    with pytest.raises(NotReadyError, match=r"PredictorReady is False .*OOMKilled.*OOM killed") as info:
        ops.wait_ready("InferenceService", "oom", "llm", 600, api_client=api_client, clock=fake.clock,
                       sleep=fake.sleep, poll=1)
    assert fake.now < 600
    assert info.value.param == "PredictorReady"


def test_delete_ignores_missing_objects(api_client: Any) -> None:
    objects = render_objects(SPEC.model_copy(update={"name": "gone"}))
    ops.apply(objects, api_client=api_client)
    deleted = ops.delete(objects, api_client=api_client)
    assert deleted[0] == "RoleBinding/gone-router-pod-reader"
    assert len(deleted) == len(objects)
    assert ops.delete(objects, api_client=api_client) == []
    assert ops.get_object("InferenceService", "gone", api_client=api_client, namespace="llm") is None


def test_namespace_is_required_for_namespaced_kinds(api_client: Any) -> None:
    objects = render_objects(SPEC.model_copy(update={"name": "nons", "namespace": None}))
    with pytest.raises(KubeError, match="no namespace"):
        ops.apply(objects, api_client=api_client)
    assert ops.apply(objects[:1], api_client=api_client, namespace="other")[0]["metadata"]["namespace"] == "other"


def test_kubeconfig_file_is_parsed_once_into_a_client(double: KubeApiDouble, tmp_path: Path) -> None:
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "double",
        "clusters": [{"name": "double", "cluster": {"server": double.url}}],
        "users": [{"name": "me", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "double", "context": {"cluster": "double", "user": "me", "namespace": "llm"}}],
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(kubeconfig))
    client = ops.KubeConfig(kubeconfig=str(path)).api_client()
    try:
        assert client.configuration.host == double.url
        assert ops.get_object("InferenceService", "missing", api_client=client, namespace="llm") is None
    finally:
        client.close()
