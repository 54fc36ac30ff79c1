"""Loop-owned metrics expose exactly what prometheus_client's own Counter and Histogram would, for the same calls."""

from __future__ import annotations

import prometheus_client
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from kserve_llmd.router import loopmetrics
from kserve_llmd.router.metrics import DECISION_BUCKETS, RATIO_BUCKETS

OUTCOMES = ("ok", "timeout", "client_disconnected")


def exposition(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


@given(st.lists(st.tuples(st.sampled_from(["a:1", "b:2"]), st.sampled_from(OUTCOMES)), max_size=30),
       st.lists(st.floats(0, 0.02, allow_nan=False) | st.sampled_from(DECISION_BUCKETS), max_size=50),
       st.lists(st.sampled_from(RATIO_BUCKETS) | st.floats(0, 1), max_size=30),
       st.integers(0, 5))
def test_exposition_matches_prometheus_client(requests: list[tuple[str, str]], latencies: list[float],
                                              ratios: list[float], retries: int) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    mine = [loopmetrics.Counter("r_requests", "Requests.", ["endpoint", "outcome"]),
            loopmetrics.Histogram("r_latency_seconds", "Latency.", DECISION_BUCKETS),
            loopmetrics.Histogram("r_ratio", "Ratio.", RATIO_BUCKETS),
            loopmetrics.Counter("r_retries", "Retries.")]
    ours.register(loopmetrics.LoopCollector(mine))
    reference = [prometheus_client.Counter("r_requests", "Requests.", ["endpoint", "outcome"], registry=theirs),
                 prometheus_client.Histogram("r_latency_seconds", "Latency.", buckets=DECISION_BUCKETS,
                                             registry=theirs),
                 prometheus_client.Histogram("r_ratio", "Ratio.", buckets=RATIO_BUCKETS, registry=theirs),
                 prometheus_client.Counter("r_retries", "Retries.", registry=theirs)]
    for (counter, latency, ratio, plain) in (mine, reference):
        for endpoint, outcome in requests:
            counter.labels(endpoint, outcome).inc()
        for value in latencies:
            latency.observe(value)
        for value in ratios:
            ratio.observe(value)
        plain.inc(retries)
    assert exposition(ours) == exposition(theirs)


def test_misuse_is_refused() -> None:
    labelled = loopmetrics.Counter("c", "C.", ["endpoint"])
    with pytest.raises(ValueError, match="labels"):
        labelled.inc()
    with pytest.raises(ValueError, match="expected labels"):
        labelled.labels("a", "b")
    with pytest.raises(ValueError, match="only go up"):
        labelled.labels("a").inc(-1)
