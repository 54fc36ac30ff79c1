"""Counters and histograms owned by the router's event loop: plain numbers, no lock.

prometheus_client's ``Counter.inc`` and ``Histogram.observe`` take a mutex on every call, because their values may
be shared between threads. Every router metric is written, and scraped, on the one event-loop thread, so that lock
buys nothing on the per-request path. These keep plain ints and floats; a ``LoopCollector`` registered in the
router's ``CollectorRegistry`` turns them into Prometheus families when ``/metrics`` is scraped (same names, labels
and exposition as prometheus_client's, minus its ``_created`` samples).

The API is the subset of prometheus_client's the router uses: ``Counter(name, doc, labelnames)``, then
``.labels(*values).inc(n)`` (or ``.inc(n)`` without labels); ``Histogram(name, doc, buckets).observe(v)``; and
``collect()`` on either.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from typing import cast

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_le = cast(Callable[[float], str], floatToGoString)  # a bucket bound as prometheus_client writes it (untyped there)


class _Count:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self.value += amount


class Counter:
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], _Count] = {}
        self._plain = _Count()

    def labels(self, *values: object) -> _Count:
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            if len(key) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {key}")
            child = self._children[key] = _Count()
        return child

    def inc(self, amount: float = 1.0) -> None:
        if self.labelnames:
            raise ValueError(f"{self.name} has labels {self.labelnames}: use labels(...).inc()")
        self._plain.inc(amount)

    def collect(self) -> list[Metric]:
        out = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        if self.labelnames:
            for key, child in self._children.items():
                out.add_metric(list(key), child.value)
        else:
            out.add_metric([], self._plain.value)
        return [out]


class Histogram:
    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = tuple(sorted(float(b) for b in buckets))
        self._counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += 1  # le: the first bound >= value
        self._sum += value

    def collect(self) -> list[Metric]:
        cumulative, total = [], 0
        for bound, count in zip((*self._bounds, float("inf")), self._counts, strict=True):
            total += count
            cumulative.append((_le(bound), float(total)))
        out = HistogramMetricFamily(self.name, self.documentation)
        out.add_metric([], cumulative, sum_value=self._sum)
        return [out]


class LoopCollector(Collector):
    """Exposes loop-owned metrics through a ``CollectorRegistry`` (scraped on the same loop that writes them)."""

    def __init__(self, metrics: Iterable[Counter | Histogram]) -> None:
        self._metrics = list(metrics)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return [family for m in self._metrics for family in m.collect()]
