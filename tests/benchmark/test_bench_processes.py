"""Against the real simulator process: the CLI end to end, and children always stopped (no orphans)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest

from kserve_llmd.benchmark.processes import ManagedProcess, ProcessStartError

SIM = ["sim", "--port", "0", "--engines", "2", "--profile", "tiny", "--time-scale", "0"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_cli_benches_a_simulated_engine(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: cli\nworkload: {type: shared-prefix, num_groups: 2, prompts_per_group: 2,\n"
                        "  system_prompt_len: 64, question_len: 8, output_len: 3}\n"
                        "load: {qps: [50], num_requests: 8, warmup: 4}\n")
    async with ManagedProcess("sim", SIM, tmp_path / "sim.log") as sim:
        engines = [e["url"] for e in sim.ready["engines"]]
        args = ["bench", "--target", engines[0], "--scenario", str(scenario), "-o", str(tmp_path / "out"),
                "--quiet", *(a for url in engines for a in ("--engine-metrics", url))]
        child = await asyncio.create_subprocess_exec(sys.executable, "-m", "kserve_llmd", *args,
                                                     stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()
    assert "| target | qps=50 | 8/0 |" in out.decode()
    summary = orjson.loads((tmp_path / "out" / "bench_cli.json").read_bytes())
    level = summary["runs"][0]["levels"][0]
    assert level["completed"] == 8
    assert level["output_tokens"] == 24
    # the warm-up requests filled the cache: the measured repeats of the same 4 prompts hit the engine's cache
    assert level["engine_hit_rate"] > 0
    assert level["client_cached_ratio"] > 0


async def test_children_are_stopped_when_the_run_is_cancelled(tmp_path: Path) -> None:
    started: list[ManagedProcess] = []
    ready = asyncio.Event()

    async def run() -> None:
        async with ManagedProcess("sim", SIM, tmp_path / "sim.log") as sim:
            started.append(sim)
            ready.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(run())
    await ready.wait()
    pid = started[0]._process.pid if started[0]._process else -1
    assert _alive(pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _alive(pid)


async def test_a_child_that_dies_before_ready_is_reported_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(ProcessStartError, match="exited with 2 before it was ready"):
        async with ManagedProcess("sim", ["sim", "--profile", "no-such-profile", "--port", "0"],
                                  tmp_path / "sim.log"):
            pass
