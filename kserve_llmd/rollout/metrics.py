"""The headline metrics a rollout compares, with the direction in which each one gets worse.

Names are flat ``<quantity>_<stat>_<unit>`` keys (``ttft_p95_ms``) so they read the same in SLO strings, in KFP
``Metrics`` artifacts and in the decision evidence. A benchmark summary is turned into this flat form once
(``kserve_llmd.rollout.bench.summary_metrics``); everything downstream only sees ``dict[str, float]``.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

#: Metric name → value (the flat form every rollout step exchanges).
MetricValues: TypeAlias = dict[str, float]
#: ``lower``: a higher value is a regression (latency, errors); ``higher``: a lower value is (throughput).
Better: TypeAlias = Literal["lower", "higher"]

_PERCENTILES = ("p50", "p90", "p95", "p99")

METRICS: dict[str, Better] = {
    **{f"ttft_{p}_ms": "lower" for p in _PERCENTILES},
    **{f"itl_{p}_ms": "lower" for p in _PERCENTILES},
    **{f"e2e_{p}_ms": "lower" for p in _PERCENTILES},
    "error_rate": "lower",
    "requests_per_s": "higher",
    "output_tokens_per_s": "higher",
}


def better(metric: str) -> Better:
    """The direction of ``metric``; KeyError for a name that is not in ``METRICS``."""
    return METRICS[metric]
