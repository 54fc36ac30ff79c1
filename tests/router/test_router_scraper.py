"""Metrics parsing (only the vLLM names the scheduler reads) and the scrape loop's health and staleness."""

from __future__ import annotations

import aiohttp
from engine_double import EngineDouble
from harness import running_router, until

from kserve_llmd.router.config import ScrapeConfig
from kserve_llmd.router.scraper import _bind_to_host, parse_vllm_metrics

PAGE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
vllm:num_requests_waiting{engine="0",model_name="m"} 7.0
vllm:num_requests_waiting{engine="1",model_name="m"} 1.0
vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.9
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75
vllm:lora_requests_info{max_lora="4",running_lora_adapters="old",waiting_lora_adapters=""} 1.7e9
vllm:lora_requests_info{max_lora="4",running_lora_adapters="a,b",waiting_lora_adapters="c"} 1.8e9
vllm:cache_config_info{block_size="32",enable_prefix_caching="True",num_gpu_blocks="1000"} 1.0
vllm:prompt_tokens_total{model_name="m"} 123.0
vllm:num_requests_waiting{broken
vllm:num_requests_running notanumber
garbage line
"""


def test_parse_vllm_metrics() -> None:
    m = parse_vllm_metrics(PAGE)
    assert (m.running, m.waiting) == (5.0, 8.0)  # summed over engines
    assert m.kv_usage == 0.5  # the new name wins and is averaged
    assert m.running_loras == {"a", "b"}
    assert m.waiting_loras == {"c"}
    assert m.max_lora == 4
    assert m.block_size == 32


def test_parse_old_kv_name_and_empty_page() -> None:
    assert parse_vllm_metrics('vllm:gpu_cache_usage_perc{model_name="m"} 0.4\n').kv_usage == 0.4
    empty = parse_vllm_metrics("")
    assert empty.kv_usage is None
    assert empty.running == 0.0


def test_wildcard_bind_host_is_replaced() -> None:
    assert _bind_to_host("tcp://*:5557", "10.0.0.5") == "tcp://10.0.0.5:5557"
    assert _bind_to_host("tcp://0.0.0.0:5557", "h") == "tcp://h:5557"
    assert _bind_to_host("tcp://10.1.1.1:5557", "h") == "tcp://10.1.1.1:5557"


async def test_scrape_feeds_endpoint_state() -> None:
    async with EngineDouble(waiting=4, running=2, kv_usage=0.3) as eng, running_router([eng]) as router:
        ep = next(iter(router.endpoints))
        assert (ep.metrics.waiting, ep.metrics.running, ep.metrics.kv_usage) == (4, 2, 0.3)  # first round at start
        eng.waiting = 9
        await until(lambda: ep.metrics.waiting == 9)


async def test_metrics_failures_mark_unhealthy_then_recover() -> None:
    eng = EngineDouble()
    scrape = ScrapeConfig(interval=0.02, failure_threshold=2, health_interval=0.02)
    async with eng, running_router([eng], scrape=scrape) as router, aiohttp.ClientSession():
        ep = next(iter(router.endpoints))
        assert ep.healthy
        await eng.aclose()  # scrapes now fail
        await until(lambda: not ep.healthy)
        assert (router.metrics.registry.get_sample_value("kserve_llmd_router_scrape_failures_total",
                                                   {"endpoint": ep.id, "what": "metrics"}) or 0) >= 2
        async with EngineDouble() as back:  # the engine comes back (at a new address: re-point the endpoint)
            ep.url = back.url
            await until(lambda: ep.healthy)
