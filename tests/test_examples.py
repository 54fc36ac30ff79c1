"""Every file in examples/ is exercised: Python scripts run as subprocesses (the cluster one against the API
double), YAML files are validated against the CRD schemas."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kserve_llmd.kube import crds
from kserve_llmd.testing.kube_double import KubeApiDouble

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
MANIFESTS = sorted(EXAMPLES.glob("*.yaml"))


def test_every_example_is_covered() -> None:
    assert {p.suffix for p in EXAMPLES.iterdir() if p.is_file()} <= {".py", ".yaml", ".md"}
    assert SCRIPTS
    assert MANIFESTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_runs(script: Path, tmp_path: Path) -> None:
    env = {**os.environ, "KSERVE_LLMD_NAMESPACE": "examples"}
    with KubeApiDouble(tick_interval=0.01) as double:
        env["KSERVE_LLMD_KUBE_HOST"] = double.url
        result = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        if script.name == "notebook_cluster.py":
            assert "endpoint: http://" in result.stdout
            assert double.get("InferenceService", "qwen3-0-6b", "examples") is None  # deleted again
            assert ("POST", "/apis/serving.kserve.io/v1beta1/namespaces/examples/inferenceservices") in double.requests


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid(manifest: Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc]
    assert documents
    crds.validate_all(documents)
