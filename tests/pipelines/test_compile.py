"""The compiled pipeline matches the committed golden file (regenerate: ``python -m pipelines.pipeline --compile``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipelines.pipeline import GOLDEN, compile_pipeline


def _stable(path: Path) -> Any:
    doc = yaml.safe_load(path.read_text())
    doc.pop("sdkVersion", None)  # the kfp version that compiled it; everything else is deterministic
    return doc


def test_golden_is_up_to_date(tmp_path: Path) -> None:
    fresh = compile_pipeline(tmp_path / "llmd_rollout.yaml")
    assert _stable(fresh) == _stable(GOLDEN), "pipeline drifted: run `python -m pipelines.pipeline --compile`"


def test_shape_of_the_pipeline() -> None:
    doc = _stable(GOLDEN)
    tasks = doc["root"]["dag"]["tasks"]
    assert {"deploy", "benchmark", "canary", "condition-branches-1", "condition-4"} <= set(tasks)
    assert tasks["canary"]["dependentTasks"] == ["benchmark", "deploy"]
    branches = doc["components"]["comp-condition-branches-1"]["dag"]["tasks"]
    conditions = [t["triggerPolicy"]["condition"] for t in branches.values()]
    assert conditions[0] == "inputs.parameter_values['pipelinechannel--canary-decision'] == 'promote'"
    assert conditions[1].startswith("!(")  # the Else branch
    images = {c["container"]["image"] for c in doc["deploymentSpec"]["executors"].values()}
    assert images == {"ghcr.io/kserve-llmd/kserve-llmd:0.1.0"}
    assert doc["root"]["inputDefinitions"]["parameters"]["slos"]["defaultValue"] == (
        "ttft_p95_ms<=500,itl_p95_ms<=50,error_rate<=0.01"
    )


def test_image_override(tmp_path: Path) -> None:
    doc = yaml.safe_load(compile_pipeline(tmp_path / "p.yaml", image="registry.example/llmd:dev").read_text())
    images = {c["container"]["image"] for c in doc["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/llmd:dev"}
