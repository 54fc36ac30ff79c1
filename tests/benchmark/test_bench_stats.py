"""Percentiles of known samples, Poisson arrival rates, goodput counting, summaries."""

from __future__ import annotations

import itertools
import random
import statistics

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kserve_llmd.benchmark.arrivals import poisson_offsets
from kserve_llmd.benchmark.records import RequestRecord
from kserve_llmd.benchmark.scenario import SLO
from kserve_llmd.benchmark.stats import meets_slo, percentile, summarize

MS = 1_000_000


def test_percentiles_of_known_samples() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert percentile([7], 99) == 7
    assert percentile([5, 1, 3], 0) == 1
    assert percentile([5, 1, 3], 100) == 5


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0, 100))
def test_percentile_matches_numpy_linear(values: list[float], p: float) -> None:
    assert percentile(values, p) == pytest.approx(float(np.percentile(values, p)), rel=1e-9, abs=1e-6)


def test_poisson_arrivals_have_the_right_mean_rate_and_exponential_gaps() -> None:
    offsets = poisson_offsets(random.Random(7), qps=5.0)
    times = [next(offsets) for _ in range(20001)]
    assert times[0] == 0.0
    rate = 20000 / times[-1]
    assert rate == pytest.approx(5.0, rel=0.03)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.stdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, abs=0.03)  # exponential: CV = 1


def test_poisson_arrivals_are_reproducible_from_the_seed() -> None:
    a, b = poisson_offsets(random.Random(3), 2.0), poisson_offsets(random.Random(3), 2.0)
    assert [next(a) for _ in range(50)] == [next(b) for _ in range(50)]


def _record(i: int, ttft_ms: float, e2e_ms: float, output: int = 11, *, warmup: bool = False,
            error: str | None = None) -> RequestRecord:
    return RequestRecord(index=i, level="l", warmup=warmup, start_ns=i * MS, ttft_ns=int(ttft_ms * MS),
                         itl_ns=[10 * MS] * (output - 1), e2e_ns=int(e2e_ms * MS), prompt_tokens=100,
                         cached_tokens=40, output_tokens=output, status=200 if error is None else 500, error=error)


def test_goodput_counts_exactly_the_requests_meeting_both_slos() -> None:
    slo = SLO(ttft_ms=100, itl_ms=20)
    records = [
        _record(0, 50, 250),  # TPOT (250-50)/10 = 20 ms: meets both (bounds inclusive)
        _record(1, 100, 200),  # TTFT 100: meets; TPOT 10
        _record(2, 101, 200),  # TTFT over
        _record(3, 50, 260),  # TPOT 21: over
        _record(4, 10, 20, error="boom"),  # failed
        _record(5, 10, 20, warmup=True),  # warm-up: not measured at all
        _record(6, 90, 90, output=1),  # one token: no inter-token gap, ITL SLO trivially met
    ]
    assert [meets_slo(r, slo) for r in records] == [True, True, False, False, False, True, True]
    summary = summarize("l", records, slo)
    assert summary.measured == 6
    assert summary.completed == 5
    assert summary.failed == 1
    assert summary.slo_attainment == pytest.approx(3 / 6)
    assert summary.goodput == pytest.approx(3 / summary.duration_s)
    assert summary.errors == {"boom": 1}


def test_summary_metrics_follow_their_definitions() -> None:
    records = [_record(i, ttft_ms=10 * (i + 1), e2e_ms=100 + 10 * (i + 1)) for i in range(4)]
    s = summarize("l", records, SLO())
    assert s.ttft_ms.p50 == pytest.approx(25.0)
    assert s.ttft_ms.n == 4
    assert s.itl_ms.n == 40
    assert s.itl_ms.p99 == pytest.approx(10.0)
    assert s.tpot_ms.p50 == pytest.approx(10.0)
    # duration: first start (0 ms) to last end (3 ms + 140 ms)
    assert s.duration_s == pytest.approx(0.143)
    assert s.output_throughput == pytest.approx(44 / 0.143)
    assert s.request_throughput == pytest.approx(4 / 0.143)
    assert s.client_cached_ratio == pytest.approx(0.4)
    assert s.goodput == pytest.approx(s.request_throughput)  # no SLO: every completed request is good
