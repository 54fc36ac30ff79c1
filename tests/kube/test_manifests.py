"""manifests/ (kustomize) and examples/*.yaml: golden, every reference resolves, every built object validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kserve_llmd.errors import ConfigError
from kserve_llmd.kube import crds, kustomize, render
from kserve_llmd.kube.render import ROOT

GOLDEN = {**kustomize.manifest_files(prefix="manifests"), **render.example_files()}
KUSTOMIZATIONS = sorted(p for p in [*ROOT.glob("manifests/**/kustomization.yaml"),
                                    *ROOT.glob("runtimes/**/kustomization.yaml")])


@pytest.mark.parametrize("rel", sorted(GOLDEN))
def test_checked_in_file_matches_the_code(rel: str) -> None:
    path = ROOT / rel
    assert path.is_file(), f"{rel} is missing: run scripts/regenerate-golden"
    assert path.read_text() == GOLDEN[rel], f"{rel} differs from the code: run scripts/regenerate-golden"


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_reference_exists(path: Path) -> None:
    spec = yaml.safe_load(path.read_text())
    refs = [*spec.get("resources", []), *(p["path"] for p in spec.get("patches", []))]
    assert refs
    for ref in refs:
        target = path.parent / ref
        assert target.is_file() or (target / "kustomization.yaml").is_file(), f"{path}: {ref} does not exist"


@pytest.mark.parametrize(("overlay", "backend"), [("gpu", "vllm"), ("cpu", "sim")])
def test_overlay_builds_to_valid_objects(crds_dir: Path, overlay: str, backend: str) -> None:
    objects = kustomize.build(ROOT / "manifests" / "overlays" / overlay)
    crds.validate_all(objects, crds.registry_for(crds_dir))
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == sorted(["Namespace", "ServiceAccount", "Role", "RoleBinding", "Deployment", "Service",
                            *["ServingRuntime"] * 3])
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == kustomize.NAMESPACE
    runtimes = [o["metadata"]["name"] for o in objects if o["kind"] == "ServingRuntime"]
    assert all(name.startswith(f"llmd-{backend}-") for name in runtimes)
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    assert binding["subjects"][0]["namespace"] == kustomize.NAMESPACE
    router = next(o for o in objects if o["kind"] == "Deployment")
    container = router["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    cpu_request = container["resources"]["requests"]["cpu"]
    assert cpu_request == ("100m" if overlay == "cpu" else "500m")  # the cpu overlay's patch applied
    assert container["image"]  # the patch merged into the container by name, it did not replace it


def test_strategic_merge_semantics() -> None:
    base = {"spec": {"containers": [{"name": "a", "image": "x", "args": ["1"]}, {"name": "b"}], "replicas": 1}}
    patch = {"spec": {"containers": [{"name": "a", "args": ["2"]}, {"name": "c"}]}}
    assert kustomize.strategic_merge(base, patch) == {
        "spec": {"containers": [{"name": "a", "image": "x", "args": ["2"]}, {"name": "b"}, {"name": "c"}],
                 "replicas": 1}}


def test_build_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nimages: [{name: x, newTag: y}]\n")
    with pytest.raises(ConfigError, match=r"not supported.*images"):
        kustomize.build(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        kustomize.build(tmp_path)


@pytest.mark.parametrize("name", ["inferenceservice.yaml", "llminferenceservice.yaml"])
def test_examples_validate(crds_dir: Path, name: str) -> None:
    docs = [doc for doc in yaml.safe_load_all((ROOT / "examples" / name).read_text()) if doc]
    crds.validate_all(docs, crds.registry_for(crds_dir))
    kinds = {doc["kind"] for doc in docs}
    assert ("InferenceService" if name.startswith("inference") else "LLMInferenceService") in kinds
