"""The router's own Prometheus metrics, in its own ``CollectorRegistry`` (never the process-global one).

Per-request series are observed on the request path (counters and histograms only, loop-owned: ``loopmetrics.py``,
no lock); everything that is state (in-flight counts, health, index size, events ingested) is read from the live
objects at scrape time by a collector, so the hot path never touches a gauge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kserve_llmd.router.endpoints import EndpointRegistry
from kserve_llmd.router.loopmetrics import Counter, Histogram, LoopCollector

PREFIX = "kserve_llmd_router"
DECISION_BUCKETS = (
    10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 300e-6, 500e-6, 750e-6, 1e-3, 2e-3, 5e-3, 10e-3,
)
RATIO_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(f"{PREFIX}_requests", "Requests by endpoint and outcome.", ["endpoint", "outcome"])
        self.decision_latency = Histogram(f"{PREFIX}_decision_latency_seconds",
                                          "Scheduling decision time (tokenize + match + filter + score + pick).",
                                          buckets=DECISION_BUCKETS)
        self.prefix_match_ratio = Histogram(f"{PREFIX}_prefix_match_ratio",
                                            "Matched prefix blocks / prompt blocks on the chosen endpoint.",
                                            buckets=RATIO_BUCKETS)
        self.ttft = Histogram(f"{PREFIX}_upstream_ttft_seconds",
                              "Time from sending upstream to the first response byte.", buckets=TTFT_BUCKETS)
        self.retries = Counter(f"{PREFIX}_retries", "Requests retried on another endpoint after a connect failure.")
        self.stale = Counter(f"{PREFIX}_stale_metrics_reads", "Times a scorer treated an endpoint's metrics as stale.",
                             ["endpoint"])
        self.scrape_failures = Counter(f"{PREFIX}_scrape_failures", "Failed metrics or health scrapes.",
                                       ["endpoint", "what"])
        self.affinity = Counter(f"{PREFIX}_prefix_affinity_decisions",
                                "prefix-affinity-filter choices: kept (sticky endpoints passed) or yielded (load "
                                "outweighed the cache; the others passed).", ["decision"])
        self.registry.register(LoopCollector([self.requests, self.decision_latency, self.prefix_match_ratio, self.ttft,
                                              self.retries, self.stale, self.scrape_failures, self.affinity]))

    def attach_state(self, endpoints: EndpointRegistry, index_stats: Callable[[], dict[str, float]] | None,
                     clients: Callable[[], tuple[int, dict[str, int]]]) -> None:
        """``clients()``: client connections open now, and those turned away so far by answer."""
        self.registry.register(_StateCollector(endpoints, index_stats, clients))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, endpoints: EndpointRegistry, index_stats: Callable[[], dict[str, float]] | None,
                 clients: Callable[[], tuple[int, dict[str, int]]]) -> None:
        self._endpoints = endpoints
        self._index_stats = index_stats
        self._clients = clients

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        inflight = GaugeMetricFamily(f"{PREFIX}_inflight_requests", "Requests in flight per endpoint.",
                                     labels=["endpoint"])
        tokens = GaugeMetricFamily(f"{PREFIX}_inflight_tokens",
                                   "Prompt + max_tokens of requests in flight per endpoint.", labels=["endpoint"])
        prefill = GaugeMetricFamily(f"{PREFIX}_inflight_prefill_tokens",
                                    "Uncached prompt tokens of in-flight requests not yet answered with a first byte.",
                                    labels=["endpoint"])
        healthy = GaugeMetricFamily(f"{PREFIX}_endpoint_healthy", "1 when the endpoint is healthy.",
                                    labels=["endpoint"])
        for ep in self._endpoints:
            inflight.add_metric([ep.id], ep.inflight_requests)
            tokens.add_metric([ep.id], ep.inflight_tokens)
            prefill.add_metric([ep.id], ep.prefill_tokens)
            healthy.add_metric([ep.id], 1.0 if ep.healthy else 0.0)
        open_now, refusals = self._clients()
        connections = GaugeMetricFamily(f"{PREFIX}_client_connections", "Client connections open.")
        connections.add_metric([], float(open_now))
        refused = CounterMetricFamily(f"{PREFIX}_connections_refused",
                                      "Client connections turned away at the connection cap, by answer (503, or reset "
                                      "beyond twice the cap).", labels=["answer"])
        for answer, count in sorted(refusals.items()):
            refused.add_metric([answer], float(count))
        out: list[Metric] = [inflight, tokens, prefill, healthy, connections, refused]
        if self._index_stats is not None:
            stats: dict[str, Any] = self._index_stats()
            for key, value in sorted(stats.items()):
                if key.endswith("_total"):
                    c = CounterMetricFamily(f"{PREFIX}_kv_{key.removesuffix('_total')}", f"KV index: {key}.")
                    c.add_metric([], float(value))
                    out.append(c)
                else:
                    g = GaugeMetricFamily(f"{PREFIX}_kv_{key}", f"KV index: {key}.")
                    g.add_metric([], float(value))
                    out.append(g)
        return out
