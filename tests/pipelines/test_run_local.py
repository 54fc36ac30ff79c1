"""The whole pipeline through kfp.local (SubprocessRunner, no Docker) against local simulator deployments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kserve_llmd.sdk import processes
from kserve_llmd.sdk.local import STATE_FILE, LocalDeployment
from kserve_llmd.sdk.processes import ProcessRecord
from pipelines.run_local import run


def _started(workdir: Path) -> list[ProcessRecord]:
    return [
        record
        for ledger in (workdir / "deployments").glob(f"*/{STATE_FILE}")
        for record in LocalDeployment.from_state(json.loads(ledger.read_text())).processes
    ]


def _assert_all_stopped(workdir: Path) -> None:
    started = _started(workdir)
    assert started
    assert [p.pid for p in started if processes.is_running(p)] == []


@pytest.mark.slow
def test_good_candidate_is_promoted(tmp_path: Path) -> None:
    result = run("good", workdir=tmp_path)
    assert result.decision == "promote"
    assert result.serving["name"] == "canary"
    assert result.evidence["decision"] == "promote"
    assert {c["metric"] for c in result.evidence["checks"]} >= {"ttft_p95_ms", "itl_p95_ms", "error_rate"}
    metrics = next((tmp_path / "kfp").glob("*/benchmark/executor_output.json")).read_text()  # Metrics metadata
    assert "ttft_p95_ms" in metrics
    _assert_all_stopped(tmp_path)


@pytest.mark.slow
def test_slow_prefill_candidate_is_rolled_back(tmp_path: Path) -> None:
    result = run("bad", workdir=tmp_path)
    assert result.decision == "rollback"
    assert result.serving["name"] == "stable"
    failed = [c for c in result.evidence["checks"] if not c["passed"]]
    # The slower prefill must fail the TTFT gate; on a busy machine its longer prefill steps can also push ITL over
    # (decode steps wait behind them), so other failed checks are allowed, a missing TTFT failure is not.
    assert "ttft_p95_ms" in {c["metric"] for c in failed}
    _assert_all_stopped(tmp_path)


@pytest.mark.slow
def test_unknown_scenario_fails_the_step_and_cleans_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError, match="benchmark"):
        run("good", workdir=tmp_path, scenario="no-such-scenario")
    assert "unknown scenario 'no-such-scenario'" in capsys.readouterr().out
    _assert_all_stopped(tmp_path)  # deploy's processes are stopped although teardown never ran
