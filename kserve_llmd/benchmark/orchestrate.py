"""Whole runs, as the CLI drives them: one target (``bench``) or several fresh clusters (``bench --compare``).

Both write the report (``report.write``) and the per-request JSONL into ``out_dir`` and return the ``BenchReport``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import platform
import random
import signal
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from kserve_llmd.benchmark import report as report_mod
from kserve_llmd.benchmark.compare import ClusterSpec, run_config
from kserve_llmd.benchmark.records import NsClock
from kserve_llmd.benchmark.report import BenchReport, RunSummary
from kserve_llmd.benchmark.runner import Runner
from kserve_llmd.benchmark.scenario import Scenario

T = TypeVar("T")


def _new_report(scenario: Scenario, command: str, environment: dict[str, Any]) -> BenchReport:
    env = {**environment, "cpus": os.cpu_count(), "python": platform.python_version()}
    return BenchReport(scenario=scenario.name, description=scenario.description, published=scenario.published,
                       command=command, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                       environment=env, slo=scenario.slo.model_dump())


def _records_path(out_dir: Path, stem: str) -> Path:
    """The (emptied) per-request JSONL of this run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.requests.jsonl"
    path.unlink(missing_ok=True)
    return path


def _finish(report: BenchReport, out_dir: Path, stem: str, started: float) -> list[Path]:
    report.wall_seconds = time.monotonic() - started
    report.compare()
    return report_mod.write(report, out_dir, stem)


async def bench_target(target: str, scenario: Scenario, *, out_dir: Path, stem: str, command: str,
                       label: str = "target", engine_metrics_urls: Sequence[str] = (), model: str | None = None,
                       clock: NsClock = time.perf_counter_ns, show_progress: bool = True) -> BenchReport:
    started = time.monotonic()
    runner = Runner(target, scenario, rng=random.Random(scenario.seed), clock=clock,
                    engine_metrics_urls=list(engine_metrics_urls), model=model, show_progress=show_progress,
                    label=label)
    levels = await runner.run()
    report = _new_report(scenario, command, {"target": target})
    report.runs.append(RunSummary(config=label, target=target, levels=[lv.summary for lv in levels]))
    report_mod.write_records(_records_path(out_dir, stem), label,
                             [*runner.warmup_records, *(r for lv in levels for r in lv.records)])
    _finish(report, out_dir, stem, started)
    return report


async def bench_compare(configs: Sequence[str], spec: ClusterSpec, scenario: Scenario, *, out_dir: Path, stem: str,
                        command: str, clock: NsClock = time.perf_counter_ns,
                        show_progress: bool = True) -> BenchReport:
    started = time.monotonic()
    report = _new_report(scenario, command, spec.describe())
    records_path = _records_path(out_dir, stem)
    for config in configs:
        result = await run_config(config, spec, scenario, logs=out_dir / "logs", clock=clock,
                                  show_progress=show_progress)
        report.runs.append(result.summary)
        report_mod.write_records(records_path, config, result.records)
    _finish(report, out_dir, stem, started)
    return report


def run_until_signal(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` where SIGINT and SIGTERM cancel the run and WAIT for its clean-up (children stopped), then
    raise ``KeyboardInterrupt``."""

    async def wrapper() -> T:
        task = asyncio.create_task(main)
        loop = asyncio.get_running_loop()
        signalled: list[int] = []

        def on_signal(signum: int) -> None:
            signalled.append(signum)
            task.cancel()

        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, on_signal, signum)
                installed.append(signum)
        try:
            return await task
        except asyncio.CancelledError:
            if signalled:
                raise KeyboardInterrupt from None
            raise
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    return asyncio.run(wrapper())
