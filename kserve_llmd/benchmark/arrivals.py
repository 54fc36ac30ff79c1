"""Arrival schedules: send offsets in seconds from the start of a level.

Poisson arrivals (vLLM's ``benchmark_serving`` with burstiness 1, inference-perf's ``poisson`` load): inter-arrival
gaps are independent exponential draws with mean ``1/qps`` from the injected seeded RNG.
"""

from __future__ import annotations

import random
from collections.abc import Iterator


def poisson_offsets(rng: random.Random, qps: float) -> Iterator[float]:
    """An endless increasing sequence of send offsets, the first at 0, whose long-run rate is ``qps`` per second."""
    if qps <= 0:
        raise ValueError("qps must be positive")
    t = 0.0
    while True:
        yield t
        t += rng.expovariate(qps)
