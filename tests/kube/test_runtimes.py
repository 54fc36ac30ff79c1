"""The checked-in runtimes/ are exactly what the code renders, and every one validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kserve_llmd.kube import crds, runtimes
from kserve_llmd.kube.render import ROOT

FILES = runtimes.runtime_files(prefix="runtimes")


@pytest.mark.parametrize("rel", sorted(FILES))
def test_checked_in_runtime_matches_the_code(rel: str) -> None:
    path = ROOT / rel
    assert path.is_file(), f"{rel} is missing: run scripts/regenerate-golden"
    assert path.read_text() == FILES[rel], f"{rel} differs from the code: run scripts/regenerate-golden"


def test_no_stray_runtime_files() -> None:
    on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / "runtimes").rglob("*.yaml")}
    assert on_disk == set(FILES)


def test_each_runtime_validates(crds_dir: Path) -> None:
    registry = crds.registry_for(crds_dir)
    kinds: dict[str, list[str]] = {}
    for rel, text in FILES.items():
        if rel.endswith("kustomization.yaml"):
            continue
        obj = yaml.safe_load(text)
        crds.validate(obj, registry)
        kinds.setdefault(obj["kind"], []).append(obj["metadata"]["name"])
    expected = sorted(f"llmd-{b}-{r}" for b in ("vllm", "sim") for r in ("prefill", "decode", "aggregated"))
    assert sorted(kinds["ServingRuntime"]) == sorted(kinds["ClusterServingRuntime"]) == expected


def test_write_reproduces_the_folder(tmp_path: Path) -> None:
    written = runtimes.write(tmp_path)
    assert len(written) == len(FILES)
    for rel, text in FILES.items():
        assert (tmp_path / Path(rel).relative_to("runtimes")).read_text() == text
