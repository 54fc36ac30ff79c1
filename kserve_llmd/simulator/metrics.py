"""Prometheus metrics of one engine, with vLLM's names (vllm/v1/metrics/loggers.py) and labels ``model_name``,
``engine``. One ``CollectorRegistry`` per engine, so engines sharing a process never mix their series.

Times are REAL wall-clock seconds measured by the engine's monotonic clock (after ``--time-scale``), so a benchmark
harness and the engine agree on every latency. Gauges read the engine's live state at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kserve_llmd.simulator.request import SimRequest

# vLLM's buckets (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0)
REQUEST_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                   240.0, 480.0, 960.0, 1920.0, 7680.0)
FINISH_REASONS = ("stop", "length", "abort", "error")
LABELS = ("model_name", "engine")


class EngineMetrics:
    """The metric families of one engine; ``observe_finished`` is called once per finished request."""

    def __init__(self, model: str, engine: str, *, running: Callable[[], float], waiting: Callable[[], float],
                 kv_usage: Callable[[], float], cache_info: dict[str, str]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r, lv = self.registry, (model, engine)

        def gauge(name: str, doc: str, fn: Callable[[], float]) -> None:
            Gauge(name, doc, LABELS, registry=r).labels(*lv).set_function(fn)

        gauge("vllm:num_requests_running", "Number of requests in model execution batches.", running)
        gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting)
        gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", kv_usage)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, LABELS, registry=r).labels(*lv)

        self.prefix_queries = counter("vllm:prefix_cache_queries", "Prefix-cache queries, in tokens.")
        self.prefix_hits = counter("vllm:prefix_cache_hits", "Prefix-cache hits, in tokens.")
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter("vllm:generation_tokens", "Number of generation tokens processed.")
        self.preemptions = counter("vllm:num_preemptions", "Cumulative number of preemptions.")
        success = Counter("vllm:request_success", "Count of successfully processed requests.",
                          (*LABELS, "finished_reason"), registry=r)
        self.success = {reason: success.labels(*lv, reason) for reason in FINISH_REASONS}

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, LABELS, buckets=buckets, registry=r).labels(*lv)

        self.ttft = histogram("vllm:time_to_first_token_seconds", "Time to first token in seconds.", TTFT_BUCKETS)
        self.itl = histogram("vllm:inter_token_latency_seconds", "Inter-token latency in seconds.", ITL_BUCKETS)
        self.tpot = histogram("vllm:request_time_per_output_token_seconds", "Time per output token.", ITL_BUCKETS)
        self.e2e = histogram("vllm:e2e_request_latency_seconds", "End-to-end request latency.", REQUEST_BUCKETS)
        self.queue = histogram("vllm:request_queue_time_seconds", "Time spent in WAITING phase.", REQUEST_BUCKETS)
        self.prefill = histogram("vllm:request_prefill_time_seconds", "Time spent in PREFILL phase.",
                                 REQUEST_BUCKETS)
        self.decode = histogram("vllm:request_decode_time_seconds", "Time spent in DECODE phase.", REQUEST_BUCKETS)
        info = Gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
                     (*LABELS, *sorted(cache_info)), registry=r)
        info.labels(*lv, *(cache_info[k] for k in sorted(cache_info))).set(1)

    def observe_admitted(self, query_tokens: int, hit_tokens: int) -> None:
        self.prefix_queries.inc(query_tokens)
        if hit_tokens:
            self.prefix_hits.inc(hit_tokens)

    def observe_finished(self, req: SimRequest) -> None:
        reason = req.finish_reason or "abort"
        self.success[reason if reason in self.success else "stop"].inc()
        self.prompt_tokens.inc(req.num_prompt_tokens)
        n_out = len(req.output_token_ids)
        if n_out:
            self.generation_tokens.inc(n_out)
        end = req.finished_time
        if end is None:
            return
        self.e2e.observe(end - req.arrival)
        if req.first_scheduled is not None:
            self.queue.observe(req.first_scheduled - req.arrival)
            if req.first_token_time is not None:
                self.prefill.observe(req.first_token_time - req.first_scheduled)
        if req.first_token_time is not None:
            self.decode.observe(end - req.first_token_time)
            if n_out > 1:
                self.tpot.observe((end - req.first_token_time) / (n_out - 1))

    def render(self) -> bytes:
        return generate_latest(self.registry)
