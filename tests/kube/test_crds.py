"""The strict CRD validator: strictness, int-or-string, metadata, list maps, formats, CEL, error messages."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kserve_llmd.errors import ManifestValidationError
from kserve_llmd.kube import cel, crds


@pytest.fixture
def registry(crds_dir: Path) -> crds.SchemaRegistry:
    return crds.registry_for(crds_dir)


def isvc(**predictor: Any) -> dict[str, Any]:
    model: dict[str, Any] = {"modelFormat": {"name": "huggingface"}, "runtime": "llmd-vllm-decode", "storageUri": "hf://a/b"}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "qwen", "namespace": "llm"}, "spec": {"predictor": {"model": model, **predictor}}}


def pool(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"selector": {"matchLabels": {"app": "vllm"}}, "targetPorts": [{"number": 8000}],
            "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}, **spec}
    return {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
            "metadata": {"name": "pool", "namespace": "llm"}, "spec": body}


def paths(registry: crds.SchemaRegistry, obj: dict[str, Any]) -> list[str]:
    return [issue.path for issue in registry.issues(obj)]


def test_valid_object_has_no_issues(registry: crds.SchemaRegistry) -> None:
    assert registry.issues(isvc()) == []
    assert registry.issues(pool()) == []


def test_unknown_nested_field_is_rejected_with_its_path_and_the_object_name(registry: crds.SchemaRegistry) -> None:
    obj = isvc()
    obj["spec"]["predictor"]["model"]["runtme"] = "typo"
    with pytest.raises(ManifestValidationError) as excinfo:
        registry.validate(obj)
    assert "InferenceService/qwen" in excinfo.value.message
    assert "spec.predictor.model.runtme: unknown field 'runtme'" in excinfo.value.message
    assert excinfo.value.param == "spec.predictor.model.runtme"


def test_wrong_type_names_the_field(registry: crds.SchemaRegistry) -> None:
    obj = isvc()
    obj["spec"]["predictor"]["model"]["runtime"] = 7
    assert paths(registry, obj) == ["spec.predictor.model.runtime"]


def test_fields_under_preserve_unknown_fields_are_accepted(registry: crds.SchemaRegistry) -> None:
    obj: dict[str, Any] = {
           "apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceService", "metadata": {"name": "m"},
           "spec": {"model": {"uri": "hf://a/b"},
                    "router": {"scheduler": {"config": {"inline": {"anything": {"goes": [1, 2]}}}}}}}
    assert registry.issues(obj) == []
    obj["spec"]["router"]["scheduler"]["config"]["bogus"] = 1
    assert paths(registry, obj) == ["spec.router.scheduler.config.bogus"]


@pytest.mark.parametrize(("value", "ok"), [(1, True), ("2", True), ("16Gi", True), (True, False), ([1], False)])
def test_int_or_string(registry: crds.SchemaRegistry, value: object, ok: bool) -> None:
    obj = isvc()
    obj["spec"]["predictor"]["model"]["resources"] = {"limits": {"nvidia.com/gpu": value}}
    assert (registry.issues(obj) == []) is ok


def test_null_is_rejected_where_the_schema_is_not_nullable(registry: crds.SchemaRegistry) -> None:
    obj = isvc()
    obj["spec"]["predictor"]["model"]["runtime"] = None
    assert paths(registry, obj) == ["spec.predictor.model.runtime"]


@pytest.mark.parametrize(
    ("meta", "path"),
    [
        ({"name": "Bad_Name"}, "metadata.name"),
        ({"name": "1starts-with-digit"}, "metadata.name"),  # KServe wants DNS-1035 names for InferenceServices
        ({"name": "ok", "namespace": "Not_A_Label"}, "metadata.namespace"),
        ({"name": "ok", "labels": {"llm-d.ai/role": "has space"}}, "metadata.labels.llm-d.ai/role"),
        ({"name": "ok", "labels": {"bad key!": "x"}}, "metadata.labels"),
        ({"name": "ok", "uid": "x", "bogus": 1}, "metadata.bogus"),
        ({"namespace": "llm"}, "metadata.name"),
    ],
)
def test_metadata_is_checked(registry: crds.SchemaRegistry, meta: dict[str, Any], path: str) -> None:
    obj = isvc()
    obj["metadata"] = meta
    assert path in paths(registry, obj)


def test_servingruntime_names_may_contain_dots_and_start_with_digits(registry: crds.SchemaRegistry) -> None:
    obj = {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime", "metadata": {"name": "0.vllm"},
           "spec": {"containers": [{"name": "kserve-container", "image": "x"}]}}
    assert registry.issues(obj) == []


def test_cluster_scoped_kind_takes_no_namespace(registry: crds.SchemaRegistry) -> None:
    obj = {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterServingRuntime",
           "metadata": {"name": "rt", "namespace": "llm"}, "spec": {"containers": [{"name": "c"}]}}
    assert paths(registry, obj) == ["metadata.namespace"]


def test_apiversion_and_kind_are_pinned(registry: crds.SchemaRegistry) -> None:
    obj = isvc()
    obj["apiVersion"] = "serving.kserve.io/v1alpha9"
    assert "no schema for apiVersion=serving.kserve.io/v1alpha9" in str(registry.issues(obj)[0])


def test_required_field_names_the_missing_field(registry: crds.SchemaRegistry) -> None:
    obj = isvc()
    del obj["spec"]["predictor"]["model"]["modelFormat"]["name"]
    assert [str(i) for i in registry.issues(obj)] == ["spec.predictor.model.modelFormat.name: required field missing"]


def test_list_map_keys_must_be_unique(registry: crds.SchemaRegistry) -> None:
    ports = [{"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 8080, "protocol": "TCP"}]
    obj = {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime", "metadata": {"name": "rt"},
           "spec": {"containers": [{"name": "c", "ports": ports}]}}
    assert paths(registry, obj) == ["spec.containers[0].ports"]
    ports[1]["protocol"] = "UDP"
    assert registry.issues(obj) == []


def test_int32_range_is_enforced(registry: crds.SchemaRegistry) -> None:
    obj = pool(targetPorts=[{"number": 2**31}])
    assert "spec.targetPorts[0].number" in paths(registry, obj)


def test_cel_rule_unique_target_ports(registry: crds.SchemaRegistry) -> None:
    issues = registry.issues(pool(targetPorts=[{"number": 8000}, {"number": 8000}]))
    assert [(i.path, i.message) for i in issues] == [("spec.targetPorts", "port number must be unique")]


def test_cel_rule_sees_schema_defaults(registry: crds.SchemaRegistry) -> None:
    # kind defaults to Service, and then the rule requires a port: the API server defaults before it runs CEL.
    issues = registry.issues(pool(endpointPickerRef={"name": "epp"}))
    assert [i.path for i in issues] == ["spec.endpointPickerRef"]
    assert "port is required" in issues[0].message
    assert registry.issues(pool(endpointPickerRef={"name": "epp", "kind": "Other", "group": "x.io"})) == []


def test_cel_rule_on_llminferenceservice(registry: crds.SchemaRegistry) -> None:
    scaling = {"maxReplicas": 3, "wva": {"hpa": {}}}
    obj: dict[str, Any] = {"apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceService",
                           "metadata": {"name": "m"},
                           "spec": {"model": {"uri": "hf://a/b"}, "replicas": 2, "scaling": scaling}}
    messages = [i.message for i in registry.issues(obj)]
    assert any("replicas" in m and "scaling" in m for m in messages), messages
    del obj["spec"]["replicas"]
    assert registry.issues(obj) == []


def test_every_cel_rule_in_the_shared_crds_parses(registry: crds.SchemaRegistry) -> None:
    rules: list[str] = []
    for api_version, kind in registry.kinds():
        version = registry.crd(api_version, kind)
        assert version is not None
        stack: list[Any] = [version.schema]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                rules += [r["rule"] for r in node.get("x-kubernetes-validations", [])]
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    assert len(rules) >= 2 + 83
    unparsed = [rule for rule in sorted(set(rules)) if cel._program(rule) is None]
    assert unparsed == []


def test_transition_rules_are_skipped() -> None:
    assert list(cel.check([{"rule": "self == oldSelf", "message": "immutable"}], {"a": 1})) == []


def test_vendored_schemas_match_the_shared_crds(crds_dir: Path, registry: crds.SchemaRegistry) -> None:
    hint = "vendored schemas are stale: run python -m kserve_llmd.kube.crds"
    index = json.loads((crds.VENDORED_DIR / "index.json").read_text())
    sources = {entry["source"]: entry["sha256"] for entry in index["crds"]}
    assert sources == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in crds_dir.glob("*.yaml")}, hint
    vendored = crds.default_registry()
    for key in registry.kinds():
        assert vendored.crd(*key) == registry.crd(*key), hint


def test_vendor_writes_deterministic_files(crds_dir: Path, tmp_path: Path) -> None:
    small = tmp_path / "crds"
    small.mkdir()
    shutil.copy(crds_dir / "inference.networking.k8s.io_inferencepools.yaml", small)
    first = [p.read_bytes() for p in crds.vendor(small, tmp_path / "a")]
    assert first == [p.read_bytes() for p in crds.vendor(small, tmp_path / "b")]
    assert first[0] == (crds.VENDORED_DIR / "inferencepools.inference.networking.k8s.io.json.gz").read_bytes()
    assert json.loads(gzip.decompress(first[0]))["kind"] == "InferencePool"


def test_vendored_registry_agrees_with_the_crd_directory(registry: crds.SchemaRegistry) -> None:
    vendored = crds.default_registry()
    assert vendored.kinds() == registry.kinds()
    bad = isvc()
    bad["spec"]["predictor"]["bogus"] = 1
    for obj in (isvc(), bad, pool(), pool(targetPorts=[])):
        assert vendored.issues(copy.deepcopy(obj)) == registry.issues(copy.deepcopy(obj))


def test_validate_dispatches_core_kinds(registry: crds.SchemaRegistry) -> None:
    meta = {"name": "router", "namespace": "llm"}
    sa: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
    crds.validate(sa, registry)
    sa["automountServiceAccountTokn"] = True
    with pytest.raises(ManifestValidationError, match="ServiceAccount/router: automountServiceAccountTokn"):
        crds.validate(sa, registry)
