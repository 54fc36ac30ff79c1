"""Benchmark glue: run a named scenario against a URL with ``kserve_llmd.benchmark`` and flatten the result into the
headline metrics (``metrics.METRICS``) that the KFP ``Metrics`` artifact, the SLOs and the canary decision use.

Headline numbers pool every measured (non-warm-up) request of every load level: latency percentiles over all of
them (``benchmark.stats.percentile``, numpy's default interpolation), ``error_rate`` = failed / measured, throughput =
completed requests (output tokens) / the summed level durations.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kserve_llmd.benchmark import scenario as scenarios
from kserve_llmd.benchmark.runner import LevelResult, Runner
from kserve_llmd.benchmark.scenario import Scenario
from kserve_llmd.benchmark.stats import percentile
from kserve_llmd.errors import ConfigError, UpstreamFailedError
from kserve_llmd.rollout.metrics import MetricValues
from kserve_llmd.router.traffic import VERSION_HEADER

_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
_NS_PER_MS = 1e6


@dataclass(frozen=True, slots=True)
class BenchResult:
    """One scenario against one URL: the headline metrics and the per-level summaries (JSON-ready)."""

    url: str
    scenario: str
    metrics: MetricValues
    levels: list[dict[str, object]]


def load_scenario(name: str) -> Scenario:
    """The scenario by name or path; ``ConfigError`` naming the known scenarios when it does not exist."""
    return scenarios.load(name)


def summary_metrics(results: Sequence[LevelResult]) -> MetricValues:
    """Flatten the level results into headline metrics (see the module docstring)."""
    records = [r for level in results for r in level.records if not r.warmup]
    if not records:
        raise UpstreamFailedError("the benchmark measured no requests (scenario too small, or all warm-up?)")
    done = [r for r in records if r.ok]
    metrics: MetricValues = {"error_rate": (len(records) - len(done)) / len(records)}
    samples = {
        "ttft": [r.ttft_ns / _NS_PER_MS for r in done if r.ttft_ns is not None],
        "itl": [i / _NS_PER_MS for r in done for i in r.itl_ns],
        "e2e": [r.e2e_ns / _NS_PER_MS for r in done if r.e2e_ns is not None],
    }
    for quantity, values in samples.items():
        if values:
            for name, p in _PERCENTILES.items():
                metrics[f"{quantity}_{name}_ms"] = percentile(values, p)
    duration = sum(level.summary.duration_s for level in results)
    if duration > 0:
        metrics["requests_per_s"] = len(done) / duration
        metrics["output_tokens_per_s"] = sum(r.output_tokens or 0 for r in done) / duration
    return metrics


async def run_benchmarks(
    targets: Mapping[str, str],
    scenario: str,
    *,
    model: str | None = None,
    seed: int = 0,
    versions: Mapping[str, str] | None = None,
) -> dict[str, BenchResult]:
    """Run the same scenario (same seed: same prompts, same arrival schedule) against every target AT ONCE.

    ``versions`` maps a target name to the traffic-split version its requests are pinned to at the router.
    """
    spec = load_scenario(scenario)
    names = list(targets)
    pins = versions or {}

    async def one(name: str) -> BenchResult:
        version = pins.get(name)
        runner = Runner(targets[name], spec, rng=random.Random(seed), model=model, show_progress=False, label=name,
                        headers={VERSION_HEADER: version} if version is not None else None)
        results = await runner.run()
        return BenchResult(
            url=targets[name],
            scenario=spec.name,
            metrics=summary_metrics(results),
            levels=[level.summary.model_dump(mode="json") for level in results],
        )

    outcomes = await asyncio.gather(*(one(name) for name in names))
    return dict(zip(names, outcomes, strict=True))


def run_benchmark(url: str, scenario: str, *, model: str | None = None, seed: int = 0) -> BenchResult:
    """One scenario against one URL (synchronous entry point for the pipeline step)."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"endpoint: {url!r} is not an http(s) URL", param="endpoint")
    return asyncio.run(run_benchmarks({"target": url}, scenario, model=model, seed=seed))["target"]
