"""`kserve-llmd render`: files + kustomization, validation before writing, exit codes, messages naming fields."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from kserve_llmd.cli import main
from kserve_llmd.commands.render import default_name
from kserve_llmd.kube import crds

BASE = ["render", "--model", "Qwen/Qwen3-0.6B", "--model-uri", "hf://Qwen/Qwen3-0.6B", "--namespace", "llm"]


def test_render_writes_one_file_per_object_and_a_kustomization(tmp_path: Path, crds_dir: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--prefill-replicas", "2", "--decode-replicas", "3", "--gpus-per-pod", "2",
                 "-o", str(tmp_path)]) == 0
    kustomization = yaml.safe_load((tmp_path / "kustomization.yaml").read_text())
    files = sorted(p.name for p in tmp_path.iterdir() if p.name != "kustomization.yaml")
    assert kustomization["resources"] == files
    objects = [yaml.safe_load((tmp_path / name).read_text()) for name in files]
    crds.validate_all(objects, crds.registry_for(crds_dir))
    assert [o["kind"] for o in objects] == ["ServingRuntime", "ServingRuntime", "InferenceService", "InferenceService",
                                            "ServiceAccount", "Role", "RoleBinding"]
    prefill = objects[2]["spec"]["predictor"]
    assert prefill["minReplicas"] == 2
    assert prefill["model"]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert objects[3]["metadata"]["name"] == "qwen3-0-6b"
    assert str(tmp_path / "kustomization.yaml") in capsys.readouterr().out


def test_render_llmisvc_to_stdout(capsys: pytest.CaptureFixture[str], crds_dir: Path) -> None:
    assert main([*BASE, "--format", "llmisvc", "--crds", str(crds_dir), "-o", "-"]) == 0
    (obj,) = list(yaml.safe_load_all(capsys.readouterr().out))
    assert obj["kind"] == "LLMInferenceService"
    assert obj["spec"]["router"]["scheduler"]["config"]["inline"]["kind"] == "EndpointPickerConfig"


def test_router_settings_reach_the_transformer_and_a_typo_fails_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--prefill-replicas", "0", "--router-set", "timeouts.first_byte=1200",
                 "--router-set", "limits.max_body_bytes=33554432", "-o", "-"]) == 0
    isvc = next(o for o in yaml.safe_load_all(capsys.readouterr().out) if o["kind"] == "InferenceService")
    args = isvc["spec"]["transformer"]["containers"][0]["args"]
    assert args[-6:] == ["--set", "limits.max_body_bytes=33554432", "--set", "timeouts.drain_delay=5",
                         "--set", "timeouts.first_byte=1200"]
    for bad, message in (("timeouts.firstbyte=1", "timeouts.firstbyte: no such setting"),
                         ("limits.max_connections=0", "limits.max_connections: Input should be greater than"),
                         ("oops", "--router-set 'oops': expected SECTION.FIELD=VALUE")):
        assert main([*BASE, "--router-set", bad, "-o", str(tmp_path / "out")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "out").exists()
    assert main([*BASE, "--format", "llmisvc", "--router-set", "timeouts.total=9", "-o", "-"]) == 2
    assert "format llmisvc runs KServe's scheduler" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--decode-replicas", "-1"], "decode.replicas"),
        (["--prefill-replicas", "-3"], "prefill.replicas"),
        (["--name", "Bad_Name"], "name"),
        (["--gpus-per-pod", "-1"], "gpus"),
    ],
)
def test_bad_spec_exits_2_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                           field: str) -> None:
    assert main([*BASE, *args, "-o", str(tmp_path / "out")]) == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--model", "x", "-o", str(tmp_path)]) == 2
    assert "required: --model-uri" in capsys.readouterr().err
    with pytest.raises(SystemExit) as excinfo:
        main([*BASE, "--decode-replicas", "many", "-o", str(tmp_path)])
    assert excinfo.value.code == 2


def test_missing_crd_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--crds", str(tmp_path / "nope"), "-o", str(tmp_path / "out")]) == 2
    assert "CRD directory not found" in capsys.readouterr().err


def test_validation_failure_exits_1_and_writes_nothing(tmp_path: Path, crds_dir: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # A cluster whose InferenceService schema lacks `transformer`: the decode service cannot be accepted there.
    strict = tmp_path / "crds"
    strict.mkdir()
    for path in crds_dir.glob("*servingruntimes.yaml"):
        shutil.copy(path, strict / path.name)
    crd = crds.load_yaml(crds_dir / "serving.kserve.io_inferenceservices.yaml")
    del crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["transformer"]
    (strict / "isvc.yaml").write_text(json.dumps(crd))  # JSON is YAML, and much faster to write
    out = tmp_path / "out"
    assert main([*BASE, "--crds", str(strict), "-o", str(out)]) == 1
    assert "InferenceService/qwen3-0-6b: spec.transformer: unknown field" in capsys.readouterr().err
    assert not out.exists()
    assert main([*BASE, "--crds", str(strict), "--no-validate", "-o", str(out)]) == 0
    assert (out / "kustomization.yaml").is_file()


@pytest.mark.parametrize(("model", "name"), [("Qwen/Qwen3-0.6B", "qwen3-0-6b"), ("meta-llama/Llama-3.1-8B",
                                                                                   "llama-3-1-8b"), ("7b", "m-7b")])
def test_default_name(model: str, name: str) -> None:
    assert default_name(model) == name
