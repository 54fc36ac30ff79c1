"""Statistics over request records: exact percentiles, throughput, goodput (definitions in ``README.md``).

Percentiles interpolate linearly between closest ranks, exactly like ``numpy.percentile``'s default (which vLLM's
``benchmark_serving`` uses): for sorted values v[0..n-1], p-th percentile = v[k] + (v[k+1] − v[k])·f where
k + f = (n − 1)·p/100.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel

from kserve_llmd.benchmark.records import RequestRecord
from kserve_llmd.benchmark.scenario import SLO

_NS_PER_MS = 1e6


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError("p must be in [0, 100]")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class Dist(BaseModel):
    """Mean and percentiles of one metric, in milliseconds. ``n`` = number of samples."""

    n: int = 0
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> Dist:
        if not values_ms:
            return cls()
        return cls(n=len(values_ms), mean=sum(values_ms) / len(values_ms), p50=percentile(values_ms, 50),
                   p90=percentile(values_ms, 90), p99=percentile(values_ms, 99), max=max(values_ms))


class LevelSummary(BaseModel):
    """One load level of one configuration."""

    level: str
    qps: float | None = None
    concurrency: int | None = None
    x: float = 0.0
    measured: int = 0  # requests measured (warm-up excluded)
    completed: int = 0
    failed: int = 0
    duration_s: float = 0.0  # first measured start → last measured end
    request_throughput: float = 0.0  # completed requests / s
    output_throughput: float = 0.0  # output tokens of completed requests / s
    total_token_throughput: float = 0.0  # (prompt + output) tokens / s
    goodput: float = 0.0  # requests / s that met every SLO given
    slo_attainment: float | None = None  # fraction of measured requests that met every SLO
    ttft_ms: Dist = Dist()
    itl_ms: Dist = Dist()
    tpot_ms: Dist = Dist()
    e2e_ms: Dist = Dist()
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    client_cached_ratio: float | None = None  # Σ usage cached_tokens / Σ usage prompt_tokens
    engine_hit_rate: float | None = None  # Δ vllm:prefix_cache_hits_total / Δ vllm:prefix_cache_queries_total
    engine_metrics_error: str | None = None
    # the target router's prefix-affinity-filter choices over the level (None: not our router, or no such filter)
    affinity_kept: int | None = None
    affinity_yielded: int | None = None
    errors: dict[str, int] = {}


def meets_slo(record: RequestRecord, slo: SLO) -> bool:
    """True when the request completed and met every SLO given (no inter-token gap: ITL SLO met trivially)."""
    if not record.ok:
        return False
    if slo.ttft_ms is not None and (record.ttft_ns is None or record.ttft_ns / _NS_PER_MS > slo.ttft_ms):
        return False
    tpot = record.tpot_ns
    return slo.itl_ms is None or tpot is None or tpot / _NS_PER_MS <= slo.itl_ms


def summarize(level: str, records: Sequence[RequestRecord], slo: SLO, *, qps: float | None = None,
              concurrency: int | None = None, x: float = 0.0) -> LevelSummary:
    measured = [r for r in records if not r.warmup]
    done = [r for r in measured if r.ok]
    summary = LevelSummary(level=level, qps=qps, concurrency=concurrency, x=x, measured=len(measured),
                           completed=len(done), failed=len(measured) - len(done))
    summary.errors = dict(Counter(r.error or f"HTTP {r.status}" for r in measured if not r.ok))
    if not measured:
        return summary
    ends = [r.end_ns for r in measured if r.end_ns is not None]
    start = min(r.start_ns for r in measured)
    end = max(ends) if ends else start
    summary.duration_s = (end - start) / 1e9
    summary.prompt_tokens = sum(r.prompt_tokens or 0 for r in done)
    summary.output_tokens = sum(r.output_tokens or 0 for r in done)
    summary.cached_tokens = sum(r.cached_tokens or 0 for r in done)
    if summary.prompt_tokens and any(r.cached_tokens is not None for r in done):
        summary.client_cached_ratio = summary.cached_tokens / summary.prompt_tokens
    good = sum(1 for r in measured if meets_slo(r, slo))
    summary.slo_attainment = good / len(measured)
    if summary.duration_s > 0:
        summary.request_throughput = len(done) / summary.duration_s
        summary.output_throughput = summary.output_tokens / summary.duration_s
        summary.total_token_throughput = (summary.prompt_tokens + summary.output_tokens) / summary.duration_s
        summary.goodput = good / summary.duration_s
    summary.ttft_ms = Dist.of([r.ttft_ns / _NS_PER_MS for r in done if r.ttft_ns is not None])
    summary.itl_ms = Dist.of([i / _NS_PER_MS for r in done for i in r.itl_ns])
    summary.tpot_ms = Dist.of([t / _NS_PER_MS for r in done if (t := r.tpot_ns) is not None])
    summary.e2e_ms = Dist.of([r.e2e_ns / _NS_PER_MS for r in done if r.e2e_ns is not None])
    return summary
