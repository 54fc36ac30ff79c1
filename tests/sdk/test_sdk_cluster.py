"""LLMDeployment and `kserve-llmd deploy` against the API double (real kubernetes client, real CRD validation)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kserve_llmd.cli import main
from kserve_llmd.errors import ConfigError, NotReadyError
from kserve_llmd.kube.ops import KubeConfig
from kserve_llmd.sdk import Deployment, LLMDeployment, LocalDeployment, PoolSpec, RouterSpec
from kserve_llmd.testing.kube_double import KubeApiDouble


@pytest.fixture(scope="module")
def double() -> Iterator[KubeApiDouble]:
    with KubeApiDouble(tick_interval=0.01) as server:
        yield server


def make(double: KubeApiDouble, **kwargs: object) -> LLMDeployment:
    options: dict[str, object] = {"namespace": "llm", "kube": KubeConfig(host=double.url), "poll": 0.01}
    options.update(kwargs)
    return LLMDeployment("Qwen/Qwen3-0.6B", "hf://Qwen/Qwen3-0.6B", **options)  # type: ignore[arg-type]


def test_both_deployments_satisfy_the_protocol(double: KubeApiDouble) -> None:
    deployments: list[Deployment] = [make(double), LocalDeployment()]  # mypy checks the structure
    for dep in deployments:  # and nothing is missing at run time (no isinstance: `endpoint` would do I/O)
        assert all(callable(getattr(dep, verb)) for verb in ("render", "apply", "wait_ready", "delete"))
        assert isinstance(getattr(type(dep), "endpoint", None), property)


def test_render_is_validated_and_needs_no_cluster() -> None:
    dep = LLMDeployment("Qwen/Qwen3-0.6B", "hf://Qwen/Qwen3-0.6B", namespace="llm",
                        prefill=PoolSpec(replicas=0), decode=PoolSpec(replicas=2, gpus=2),
                        router=RouterSpec(preset="approx-prefix"))
    objects = dep.render()
    assert dep.name == "qwen3-0-6b"
    assert [o["kind"] for o in objects][:2] == ["ServingRuntime", "InferenceService"]
    isvc = next(o for o in objects if o["kind"] == "InferenceService")
    assert isvc["spec"]["predictor"]["minReplicas"] == 2
    assert "approx-prefix" in isvc["spec"]["transformer"]["containers"][0]["args"]


def test_router_settings_from_a_notebook_reach_the_transformer_and_typos_fail_at_construction() -> None:
    dep = LLMDeployment("m", "hf://m", router=RouterSpec(settings={"timeouts.first_byte": 1200}))
    isvc = next(o for o in dep.render() if o["kind"] == "InferenceService" and "transformer" in o["spec"])
    assert isvc["spec"]["transformer"]["containers"][0]["args"][-2:] == ["--set", "timeouts.first_byte=1200"]
    with pytest.raises(ConfigError, match=r"timeouts\.first_bite: no such setting"):
        LLMDeployment("m", "hf://m", router=RouterSpec(settings={"timeouts.first_bite": 1200}))


def test_bad_spec_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"decode\.replicas"):
        LLMDeployment("m", "hf://m", decode=PoolSpec(replicas=0))


@pytest.mark.parametrize("fmt", ["isvc", "llmisvc"])
def test_apply_wait_endpoint_delete(double: KubeApiDouble, fmt: str) -> None:
    with make(double, name=f"life-{fmt}", format=fmt) as dep:
        assert dep.endpoint == f"http://life-{fmt}-llm.example.com"
        assert double.get(dep.kind, dep.name, "llm") is not None
    assert double.get(dep.kind, dep.name, "llm") is None


def test_wait_ready_names_the_failed_condition(double: KubeApiDouble) -> None:
    double.fail("InferenceService", "sick-prefill", "llm", condition="PredictorReady", reason="ImagePullBackOff",
                message="image vllm/vllm-openai:v0.11.0 not found")
    dep = make(double, name="sick")
    dep.apply()
    try:
        with pytest.raises(NotReadyError, match=r"sick-prefill failed: condition PredictorReady is False.*ImagePull"):
            dep.wait_ready(timeout=60)
    finally:
        dep.delete()
        dep.close()


def test_deploy_command_applies_prints_endpoint_and_deletes(
    double: KubeApiDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["deploy", "--model", "Qwen/Qwen3-0.6B", "--model-uri", "hf://Qwen/Qwen3-0.6B", "--name", "cli",
              "--namespace", "llm", "--prefill-replicas", "0", "--kube-host", double.url, "--timeout", "30"]
    assert main(common) == 0
    assert capsys.readouterr().out.strip() == "http://cli-llm.example.com"
    assert double.get("InferenceService", "cli", "llm") is not None
    assert main([*common, "--delete"]) == 0
    assert double.get("InferenceService", "cli", "llm") is None
    double.hold("InferenceService", "stuck", "llm")
    assert main([*common[:-1], "0.2", "--name", "stuck"]) == 1
    assert "condition PredictorReady is Unknown" in capsys.readouterr().err
    assert main(["deploy", "--model", "m", "--kube-host", double.url]) == 2  # no --model-uri
