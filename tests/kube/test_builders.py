"""Typed builders: every rendered object validates strictly against the shared CRDs, and carries the llm-d wiring."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kserve_llmd.errors import ConfigError
from kserve_llmd.kube import crds
from kserve_llmd.kube.builders import (
    EndpointPickerConfig,
    RouterOptions,
    RuntimeOptions,
    discovery_rbac,
    inference_services,
    llm_inference_service,
    parse_spec,
    pd_config,
    pool_for,
    router_deployment,
    serving_runtime,
)
from kserve_llmd.kube.builders.core import Container, ContainerPort
from kserve_llmd.kube.builders.pool import EndpointPickerRef, InferencePoolSpec, LabelSelector, PortNumber
from kserve_llmd.kube.builders.router import router_container

BRIEF_PLUGINS = {"prefix-cache-scorer", "queue-scorer", "kv-cache-utilization-scorer", "max-score-picker",
                 "pd-profile-handler", "prefill-filter", "decode-filter", "prefix-based-pd-decider"}


@pytest.fixture
def registry(crds_dir: Path) -> crds.SchemaRegistry:
    return crds.registry_for(crds_dir)


def spec(**overrides: Any) -> Any:
    data = {"name": "qwen", "model": "Qwen/Qwen3-0.6B", "model_uri": "hf://Qwen/Qwen3-0.6B", "namespace": "llm"}
    return parse_spec({**data, **overrides})


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


@pytest.mark.parametrize("role", ["prefill", "decode", "both"])
@pytest.mark.parametrize("backend", ["vllm", "sim"])
@pytest.mark.parametrize("cluster", [False, True])
def test_runtimes_validate(registry: crds.SchemaRegistry, role: Any, backend: Any, cluster: bool) -> None:
    obj = serving_runtime(RuntimeOptions(role=role, backend=backend), namespace=None if cluster else "llm",
                          cluster=cluster)
    crds.validate(obj, registry)
    assert obj["kind"] == ("ClusterServingRuntime" if cluster else "ServingRuntime")


@pytest.mark.parametrize(("role", "kv_role"), [("prefill", "kv_producer"), ("decode", "kv_consumer"),
                                               ("both", "kv_both")])
def test_vllm_runtime_wiring(role: Any, kv_role: str) -> None:
    rt = serving_runtime(RuntimeOptions(role=role))
    container = rt["spec"]["containers"][0]
    args = container["args"]
    transfer = json.loads(args[args.index("--kv-transfer-config") + 1])
    assert transfer == {"kv_connector": "NixlConnector", "kv_role": kv_role}
    events = json.loads(args[args.index("--kv-events-config") + 1])
    assert events == {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": "tcp://*:5557",
                      "replay_endpoint": "tcp://*:5558", "topic": "kv@$(POD_IP):8080@{{.Name}}"}
    assert args[args.index("--served-model-name") + 1] == "{{.Name}}"
    assert "--enable-prefix-caching" in args
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["VLLM_NIXL_SIDE_CHANNEL_HOST"]["value"] == "$(POD_IP)"
    assert env["VLLM_NIXL_SIDE_CHANNEL_PORT"]["value"] == "5600"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080, "kv-events": 5557,
                                                                           "kv-replay": 5558, "nixl": 5600}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8080}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert rt["spec"]["annotations"] == {"prometheus.kserve.io/port": "8080", "prometheus.kserve.io/path": "/metrics"}
    assert rt["spec"]["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert rt["spec"]["supportedModelFormats"][0]["autoSelect"] is False
    assert rt["spec"]["labels"]["llm-d.ai/role"] == role


def test_sim_runtime_runs_our_simulator_without_gpus() -> None:
    container = serving_runtime(RuntimeOptions(role="decode", backend="sim"))["spec"]["containers"][0]
    assert container["command"] == ["kserve-llmd", "sim"]
    assert container["args"][container["args"].index("--zmq-endpoint") + 1] == "tcp://*:5557"
    assert container["args"][container["args"].index("--replay-endpoint") + 1] == "tcp://*:5558"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080, "kv-events": 5557,
                                                                           "kv-replay": 5558}
    assert "nvidia.com/gpu" not in json.dumps(container)


def test_sim_llm_inference_service_declares_the_ports_its_arguments_open() -> None:
    body = llm_inference_service(spec(format="llmisvc", backend="sim", prefill={"replicas": 1}))["spec"]
    for workload in (body["template"], body["prefill"]["template"]):
        container = workload["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        args = container["args"]
        assert str(ports["http"]) == args[args.index("--port") + 1]
        assert args[args.index("--zmq-endpoint") + 1] == f"tcp://*:{ports['kv-events']}"
        assert args[args.index("--replay-endpoint") + 1] == f"tcp://*:{ports['kv-replay']}"


@pytest.mark.parametrize("fmt", ["isvc", "llmisvc"])
@pytest.mark.parametrize("backend", ["vllm", "sim"])
@pytest.mark.parametrize("prefill", [0, 2])
@pytest.mark.parametrize("gpus", [1, 4])
def test_every_deployment_validates(registry: crds.SchemaRegistry, fmt: str, backend: str, prefill: int,
                                    gpus: int) -> None:
    s = spec(format=fmt, backend=backend, prefill={"replicas": prefill, "gpus": gpus}, decode={"replicas": 3})
    objects = inference_services(s) if fmt == "isvc" else [llm_inference_service(s)]
    crds.validate_all(objects, registry)


def test_pd_inference_services() -> None:
    objects = inference_services(spec(prefill={"replicas": 2, "gpus": 2}, decode={"replicas": 3}))
    prefill, decode = by_kind(objects, "InferenceService")
    assert prefill["metadata"]["name"] == "qwen-prefill"
    assert prefill["spec"]["predictor"]["labels"]["llm-d.ai/role"] == "prefill"
    assert prefill["spec"]["predictor"]["model"]["runtime"] == "llmd-vllm-prefill"
    assert prefill["spec"]["predictor"]["minReplicas"] == prefill["spec"]["predictor"]["maxReplicas"] == 2
    model = decode["spec"]["predictor"]["model"]
    expected = {"llm-d.ai/role": "decode", "llm-d.ai/engine-type": "vllm", "llm-d.ai/model": "qwen",
                "app.kubernetes.io/part-of": "kserve-llmd"}
    assert decode["spec"]["predictor"]["labels"] == expected
    assert model["storageUri"] == "hf://Qwen/Qwen3-0.6B"
    assert model["args"][:2] == ["--served-model-name", "Qwen/Qwen3-0.6B"]
    events = json.loads(model["args"][model["args"].index("--kv-events-config") + 1])  # replaces the runtime's
    assert (events["endpoint"], events["replay_endpoint"]) == ("tcp://*:5557", "tcp://*:5558")
    assert prefill["spec"]["predictor"]["model"]["args"][-2:] == ["--tensor-parallel-size", "2"]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    router = decode["spec"]["transformer"]["containers"][0]
    assert router["command"] == ["python", "-m", "kserve_llmd.transformer"]
    assert "--port" not in router["args"]  # KServe passes --http_port to a transformer
    selector = router["args"][router["args"].index("--selector") + 1]
    assert selector == "llm-d.ai/engine-type=vllm,llm-d.ai/model=qwen"  # the router pod has no engine-type label
    assert router["args"][router["args"].index("--preset") + 1] == "pd-decider"
    service_account = by_kind(objects, "ServiceAccount")[0]["metadata"]["name"]
    assert decode["spec"]["transformer"]["serviceAccountName"] == service_account


def test_router_pod_drains_before_it_stops_and_kubernetes_waits_for_it() -> None:
    def transformer(router_settings: dict[str, object]) -> dict[str, Any]:
        objects = inference_services(spec(prefill={"replicas": 0}, router_settings=router_settings))
        isvc: dict[str, Any] = by_kind(objects, "InferenceService")[0]["spec"]["transformer"]
        return isvc

    default = transformer({})
    args = default["containers"][0]["args"]
    assert args[args.index("--set") + 1] == "timeouts.drain_delay=5"
    assert default["terminationGracePeriodSeconds"] == 5 + 60 + 5  # drain, grace for requests in flight, exit
    custom = transformer({"timeouts.drain_delay": 0, "timeouts.shutdown_grace": 120.5})
    assert "timeouts.drain_delay=0" in custom["containers"][0]["args"]
    assert custom["terminationGracePeriodSeconds"] == 121 + 5
    (deployment, _) = router_deployment(RouterOptions(selector={"app": "x"}), None)
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 70


def test_aggregated_has_one_service_with_role_both() -> None:
    isvcs = by_kind(inference_services(spec(prefill={"replicas": 0})), "InferenceService")
    assert [o["metadata"]["name"] for o in isvcs] == ["qwen"]
    assert isvcs[0]["spec"]["predictor"]["labels"]["llm-d.ai/role"] == "both"
    assert isvcs[0]["spec"]["predictor"]["model"]["runtime"] == "llmd-vllm-aggregated"


def test_llm_inference_service_carries_the_scheduler_config() -> None:
    obj = llm_inference_service(spec(format="llmisvc", prefill={"replicas": 2, "gpus": 2}, decode={"replicas": 4}))
    body = obj["spec"]
    assert body["model"] == {"uri": "hf://Qwen/Qwen3-0.6B", "name": "Qwen/Qwen3-0.6B"}
    assert body["replicas"] == 4
    assert body["prefill"]["replicas"] == 2
    assert body["prefill"]["parallelism"] == {"tensor": 2}
    inline = body["router"]["scheduler"]["config"]["inline"]
    assert inline["kind"] == "EndpointPickerConfig"
    assert {p["type"] for p in inline["plugins"]} == BRIEF_PLUGINS
    assert [p["name"] for p in inline["schedulingProfiles"]] == ["prefill", "decode"]
    ref = llm_inference_service(spec(format="llmisvc", scheduler_config_ref="epp"))["spec"]["router"]["scheduler"]
    assert ref == {"config": {"ref": {"name": "epp", "key": "config.yaml"}}}


def test_epp_config_rejects_dangling_plugin_refs() -> None:
    config = pd_config().to_dict()
    config["schedulingProfiles"][0]["plugins"].append({"pluginRef": "no-such-scorer"})
    with pytest.raises(ValidationError, match=r"schedulingProfiles\[0\]\.plugins\[5\]\.pluginRef: 'no-such-scorer'"):
        EndpointPickerConfig.model_validate(config)


def test_inference_pool(registry: crds.SchemaRegistry) -> None:
    obj = pool_for("qwen", "llm", {"llm-d.ai/model": "qwen"}, target_port=8080, picker_service="qwen-epp")
    crds.validate(obj, registry)
    assert obj["spec"]["endpointPickerRef"] == {"name": "qwen-epp", "kind": "Service", "port": {"number": 9002},
                                                "failureMode": "FailOpen"}
    with pytest.raises(ValidationError, match="unique"):
        InferencePoolSpec(selector=LabelSelector(match_labels={"a": "b"}),
                          target_ports=[PortNumber(number=1), PortNumber(number=1)],
                          endpoint_picker_ref=EndpointPickerRef(name="e", port=PortNumber(number=9002)))


def test_rbac_reads_pods_in_its_namespace_only(registry: crds.SchemaRegistry) -> None:
    sa, role, binding = discovery_rbac("router", "llm")
    crds.validate_all([sa, role, binding], registry)
    assert role["kind"] == "Role"
    assert role["metadata"]["namespace"] == "llm"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "router", "namespace": "llm"}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_router_deployment_is_locked_down(registry: crds.SchemaRegistry) -> None:
    deployment, service = router_deployment(RouterOptions(selector={"llm-d.ai/model": "qwen"}), "llm")
    crds.validate_all([deployment, service], registry)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"] == {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
                                            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_standalone_router_is_probed_for_liveness_on_its_admin_port_and_for_readiness_on_its_client_port() -> None:
    deployment, service = router_deployment(RouterOptions(selector={"app": "x"}), "llm")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "admin": 9090}
    args = container["args"]
    assert args[args.index("--admin-port") + 1] == "9090"
    assert container["livenessProbe"]["httpGet"]["port"] == "admin"  # an overload never restarts the pod
    assert container["readinessProbe"]["httpGet"]["port"] == "http"  # an overloaded router gets less traffic
    assert {p["name"] for p in service["spec"]["ports"]} == {"http", "admin"}
    transformer = router_container(RouterOptions(selector={"app": "x"}), transformer=True)
    assert "--admin-port" not in (transformer.args or [])  # KServe runs a transformer's probes
    with pytest.raises(ValidationError, match="admin_port must differ from port"):
        RouterOptions(selector={"app": "x"}, admin_port=8000)


def test_models_use_camel_case_and_forbid_unknown_fields() -> None:
    assert Container(name="c", ports=[ContainerPort(container_port=1)]).to_dict() == {
        "name": "c", "ports": [{"containerPort": 1, "protocol": "TCP"}]}
    assert ContainerPort.model_validate({"containerPort": 2}).container_port == 2
    with pytest.raises(ValidationError, match="extra"):
        ContainerPort.model_validate({"containerPort": 2, "hostPrt": 1})


@pytest.mark.parametrize("name", ["kv-events-replay", "kv--replay", "5558", "-kv", "Kv"])
def test_port_names_are_iana_service_names(name: str) -> None:
    with pytest.raises(ValidationError):
        ContainerPort(container_port=1, name=name)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"decode": {"replicas": -1}}, "decode.replicas"),
        ({"prefill": {"replicas": -2}}, "prefill.replicas"),
        ({"decode": {"replicas": 0}}, "decode.replicas"),
        ({"name": "Qwen_3"}, "name"),
        ({"model_uri": "no-scheme"}, "model_uri"),
        ({"namespace": "UPPER"}, "namespace"),
        ({"prefill": {"replicas": 1, "gpus": -1}}, "prefill.gpus"),
    ],
)
def test_bad_specs_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        spec(**overrides)
    assert field in excinfo.value.message


names = st.from_regex(r"[a-z][a-z0-9-]{0,30}[a-z0-9]", fullmatch=True)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names, prefill=st.integers(0, 8), decode=st.integers(1, 8), gpus=st.integers(0, 8),
       fmt=st.sampled_from(["isvc", "llmisvc"]), backend=st.sampled_from(["vllm", "sim"]),
       model=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s and "{{" not in s))
def test_any_valid_spec_renders_valid_objects(registry: crds.SchemaRegistry, name: str, prefill: int, decode: int,
                                              gpus: int, fmt: str, backend: str, model: str) -> None:
    s = parse_spec({"name": name, "model": model, "model_uri": "s3://bucket/m", "format": fmt, "backend": backend,
                    "prefill": {"replicas": prefill, "gpus": gpus}, "decode": {"replicas": decode, "gpus": gpus}})
    objects = inference_services(s) if fmt == "isvc" else [llm_inference_service(s)]
    crds.validate_all(objects, registry)
