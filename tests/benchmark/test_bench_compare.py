"""``bench --compare`` end to end on real simulator and router processes (tiny profile, no waiting)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
import pytest

from kserve_llmd.benchmark import scenario as scenario_mod
from kserve_llmd.benchmark.compare import ClusterSpec
from kserve_llmd.benchmark.orchestrate import bench_compare


def _pids_of_children() -> set[int]:
    """Processes whose parent is this test process (the children a comparison started)."""
    import os

    me, children = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                children.add(int(entry.name))
    return children


async def test_compare_runs_each_config_on_a_fresh_cluster_and_stops_it(tmp_path: Path) -> None:
    scenario = scenario_mod.parse({
        "name": "cmp",
        "workload": {"type": "shared-prefix", "num_groups": 2, "prompts_per_group": 4, "system_prompt_len": 64,
                     "question_len": 8, "output_len": 4},
        "load": {"qps": [100], "num_requests": 8, "warmup": 2}}, "test")
    spec = ClusterSpec(engines=2, profile="tiny", time_scale=0.0)
    report = await bench_compare(["round-robin", "precise-prefix"], spec, scenario, out_dir=tmp_path, stem="cmp",
                                 command="test", show_progress=False)
    assert [run.config for run in report.runs] == ["round-robin", "precise-prefix"]
    for run in report.runs:
        level = run.levels[0]
        assert level.completed == 8, level.errors
        assert level.failed == 0
        assert level.engine_hit_rate is not None  # counters were scraped from the engines behind the router
    # the router's prefix-affinity choices are read from its /metrics; round-robin has no such filter: no choice made
    rr, precise = (run.levels[0] for run in report.runs)
    assert (rr.affinity_kept, rr.affinity_yielded) == (0, 0)
    assert precise.affinity_kept is not None
    assert precise.affinity_yielded is not None
    assert precise.affinity_kept + precise.affinity_yielded <= 8
    assert "| yields |" in (tmp_path / "cmp.md").read_text()
    assert report.baseline == "round-robin"
    assert len(report.comparison) == 2
    assert report.environment["engines"] == 2
    assert report.environment["profile"] == "tiny"
    records = [orjson.loads(line) for line in (tmp_path / "cmp.requests.jsonl").read_bytes().splitlines()]
    assert len(records) == 20
    assert {r["config"] for r in records} == {"round-robin", "precise-prefix"}
    # every request records the engine the router picked (its X-Routed-To): round-robin used both
    assert all(r["routed_to"] is not None for r in records)
    assert len({r["routed_to"] for r in records if r["config"] == "round-robin"}) == 2
    assert (tmp_path / "logs" / "precise-prefix-router.log").is_file()
    await asyncio.sleep(0)
    assert not _pids_of_children(), "a sim or router process outlived the comparison"


def test_cli_compare_needs_exactly_one_mode() -> None:
    import subprocess

    out = subprocess.run([sys.executable, "-m", "kserve_llmd", "bench", "--scenario", "demo"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "exactly one of --target URL or --compare" in out.stderr


def _children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def test_ctrl_c_and_sigterm_stop_every_child(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    scenario = tmp_path / "long.yaml"
    scenario.write_text("name: long\nworkload: {type: random, prompt_len: 10, output_len: 5}\n"
                        "load: {qps: [2], duration_s: 600}\n")
    for signum in (signal.SIGINT, signal.SIGTERM):
        bench = subprocess.Popen(
            [sys.executable, "-m", "kserve_llmd", "bench", "--compare", "--scenario", str(scenario), "--configs",
             "round-robin", "--engines", "1", "--profile", "tiny", "-o", str(tmp_path / "out"), "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            children: set[int] = set()
            deadline = time.monotonic() + 60
            while len(children) < 2 and time.monotonic() < deadline:  # the sim and the router
                time.sleep(0.1)
                children = _children_of(bench.pid)
            assert len(children) == 2
            time.sleep(1.0)  # let the router come up and requests flow
            children = _children_of(bench.pid)
            bench.send_signal(signum)
            _, err = bench.communicate(timeout=60)
        finally:
            if bench.poll() is None:
                bench.kill()
        assert bench.returncode == 130, err
        assert "every process it started has been stopped" in err
        for child in children:
            with pytest.raises(ProcessLookupError):
                os.kill(child, 0)
