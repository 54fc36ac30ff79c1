"""Detached processes and the local target: readiness, failures that clean up, teardown from the state alone."""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

import pytest

from kserve_llmd.errors import ConfigError, NotReadyError
from kserve_llmd.rollout import steps
from kserve_llmd.rollout.local import LocalBackend, cleanup_workdir
from kserve_llmd.rollout.spec import DeploySpec
from kserve_llmd.rollout.state import DeploymentState
from kserve_llmd.sdk import processes
from kserve_llmd.sdk.local import STATE_FILE, LocalDeployment
from kserve_llmd.sdk.processes import ProcessRecord


def _ledger(folder: Path) -> tuple[ProcessRecord, ...]:
    return LocalDeployment.from_state(json.loads((folder / STATE_FILE).read_text())).processes


def _processes(state: DeploymentState) -> tuple[ProcessRecord, ...]:
    return LocalDeployment.from_state(state.deployment).processes


def test_spawned_process_is_detached_and_stopped_only_by_its_argv(tmp_path: Path) -> None:
    argv = (sys.executable, "-c", "import time; time.sleep(60)", "marker")
    record = processes.start(argv, name="sleep", role="sleep", log=tmp_path / "sleep.log",
                             ready_file=tmp_path / "sleep.ready.json")
    other = record.model_copy(update={"argv": (*record.argv[:-1], "another-process")})
    try:
        assert os.getpgid(record.pid) == record.pid  # its own session and process group
        assert processes.is_running(record)
        assert not processes.stop(other)  # a different command line: never signalled
        assert processes.is_running(record)
    finally:
        assert processes.stop(record)
    assert not processes.is_running(record)
    assert not processes.stop(record)  # already gone


def test_deploy_delete_round_trip(tmp_path: Path) -> None:
    deployed = steps.deploy(name="stable", target="local", workdir=str(tmp_path), time_scale=0.0)
    state = DeploymentState.from_json(deployed.state)
    try:
        assert state.endpoint == deployed.endpoint
        assert [p.role for p in _processes(state)] == ["sim", "router"]
        assert all(processes.is_running(p) for p in _processes(state))
    finally:
        steps.teardown(deployed.state)  # from the JSON alone, as the teardown step does
    assert not any(processes.is_running(p) for p in _processes(state))


def test_engine_that_exits_fails_the_step_with_its_log(tmp_path: Path) -> None:
    spec = DeploySpec(name="broken", workdir=str(tmp_path), sim_args=("--max-num-seqs", "0"))
    with pytest.raises(NotReadyError, match="the sim process exited before it was ready") as info:
        LocalBackend().deploy(spec)
    assert "invalid configuration" in info.value.message  # the engine's own error, from its log


def test_endpoint_that_never_becomes_ready_times_out_and_cleans_up(tmp_path: Path) -> None:
    ticks = itertools.count()
    backend = LocalBackend(clock=lambda: float(next(ticks)), sleep=lambda _s: None)  # every look costs 1 "second"
    spec = DeploySpec(name="slow", workdir=str(tmp_path), ready_timeout_s=3)
    with pytest.raises(NotReadyError, match=r"slow: the sim did not write sim.ready.json within 3 s"):
        backend.deploy(spec)
    started = _ledger(tmp_path / "slow")
    assert started
    assert not any(processes.is_running(p) for p in started)


def test_cleanup_workdir_stops_whatever_is_left(tmp_path: Path) -> None:
    state = LocalBackend().deploy(DeploySpec(name="left", workdir=str(tmp_path), time_scale=0.0))
    assert cleanup_workdir(tmp_path) == 2
    assert not any(processes.is_running(p) for p in _processes(state))
    assert cleanup_workdir(tmp_path) == 0


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"name": "Bad Name", "workdir": "/tmp"}, "name: String should match pattern"),
        ({"name": "ok", "target": "moon"}, "target: Input should be 'local' or 'cluster'"),
        ({"name": "ok", "workdir": ""}, "workdir: the local target needs a folder"),
    ],
)
def test_bad_deploy_parameters(params: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        steps.deploy(**params)


def test_garbage_state_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"state: not a deployment state JSON"):
        steps.teardown('{"name": "x"}')
