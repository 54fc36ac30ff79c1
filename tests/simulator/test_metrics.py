"""/metrics parsed with prometheus_client's own text parser."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.simulator.conftest import complete, words


async def _scrape(http: aiohttp.ClientSession, url: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    async with http.get(url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = [(s.name, s.labels, s.value) for s in family.samples]
    return out


def _value(m: dict[str, list[tuple[str, dict[str, str], float]]], family: str, sample: str,
           **labels: str) -> float:
    for name, lab, value in m[family]:
        if name == sample and all(lab.get(k) == v for k, v in labels.items()):
            assert lab["model_name"] == "sim-model"
            return value
    raise AssertionError(f"{sample} {labels} not found")


async def test_counters_histograms_and_cache_info(make_cluster, http: aiohttp.ClientSession) -> None:
    cluster = await make_cluster(engines=2)
    url = cluster.engines[1].url
    await complete(http, url, words(10), max_tokens=3)
    await complete(http, url, words(10), max_tokens=3, stop=["no-such-word"])
    m = await _scrape(http, url)
    assert _value(m, "vllm:prompt_tokens", "vllm:prompt_tokens_total", engine="1") == 20
    assert _value(m, "vllm:generation_tokens", "vllm:generation_tokens_total") == 6
    assert _value(m, "vllm:prefix_cache_queries", "vllm:prefix_cache_queries_total") == 20
    assert _value(m, "vllm:prefix_cache_hits", "vllm:prefix_cache_hits_total") == 8
    assert _value(m, "vllm:request_success", "vllm:request_success_total", finished_reason="length") == 2
    assert _value(m, "vllm:request_success", "vllm:request_success_total", finished_reason="stop") == 0
    assert _value(m, "vllm:num_preemptions", "vllm:num_preemptions_total") == 0
    assert _value(m, "vllm:num_requests_running", "vllm:num_requests_running") == 0
    assert _value(m, "vllm:num_requests_waiting", "vllm:num_requests_waiting") == 0
    assert 0 <= _value(m, "vllm:kv_cache_usage_perc", "vllm:kv_cache_usage_perc") <= 1
    for hist, count in [("vllm:time_to_first_token_seconds", 2), ("vllm:inter_token_latency_seconds", 4),
                        ("vllm:e2e_request_latency_seconds", 2), ("vllm:request_queue_time_seconds", 2),
                        ("vllm:request_prefill_time_seconds", 2), ("vllm:request_decode_time_seconds", 2)]:
        assert _value(m, hist, hist + "_count") == count, hist
        assert _value(m, hist, hist + "_bucket", le="+Inf") == count
    info = [lab for name, lab, value in m["vllm:cache_config_info"] if value == 1]
    assert len(info) == 1
    assert info[0]["block_size"] == "4"
    assert info[0]["num_gpu_blocks"] == "64"
    assert info[0]["enable_prefix_caching"] == "True"
    assert info[0]["prefix_caching_hash_algo"]
    # The other engine's registry is separate.
    other = await _scrape(http, cluster.engines[0].url)
    assert _value(other, "vllm:prompt_tokens", "vllm:prompt_tokens_total", engine="0") == 0


async def test_preemption_counter(make_cluster, http: aiohttp.ClientSession) -> None:
    import asyncio

    cluster = await make_cluster(kv_cache_size=4)
    url = cluster.engines[0].url
    await asyncio.gather(complete(http, url, words(7, "o"), max_tokens=6),
                         complete(http, url, words(7, "n"), max_tokens=6))
    m = await _scrape(http, url)
    assert _value(m, "vllm:num_preemptions", "vllm:num_preemptions_total") >= 1
    assert _value(m, "vllm:request_success", "vllm:request_success_total", finished_reason="length") == 2
