"""The router in front of the real simulator (in process): KV-event discovery, precise prefix routing, streaming."""

from __future__ import annotations

import asyncio
import random
from importlib import resources

import aiohttp
import pytest
import yaml
from harness import until

from kserve_llmd.router.app import Router
from kserve_llmd.router.config import EndpointSpec, RouterConfig, ScrapeConfig, load_preset, parse_scheduler_config
from kserve_llmd.router.discovery import StaticDiscovery
from kserve_llmd.simulator.cluster import SimCluster
from kserve_llmd.simulator.config import SimConfig

PROMPT = " ".join(f"word{i}" for i in range(200))  # 200 builtin tokens = 12 full blocks of 16


async def test_precise_prefix_routing_follows_kv_events() -> None:
    async with SimCluster(SimConfig(engines=3, time_scale=0, model="sim")) as sim:
        # no ZMQ endpoint given: the router asks each engine's /kv_event_sources
        config = RouterConfig(endpoints=[EndpointSpec(url=e.url) for e in sim.engines],
                              scheduler=load_preset("precise-prefix"), scrape=ScrapeConfig(interval=0.05))
        async with Router(config, StaticDiscovery(config.all_endpoints()), rng=random.Random(1)) as router, \
                aiohttp.ClientSession() as client:
            assert {ep.kv_events for ep in router.endpoints} == {e.kv_events for e in sim.engines}
            body = {"model": "sim", "prompt": PROMPT, "max_tokens": 4}
            async with client.post(router.url + "/v1/completions", json=body) as resp:
                assert resp.status == 200
                first = resp.headers["X-Routed-To"]
                assert (await resp.json())["choices"]
            ingester = router.ingester
            assert ingester is not None
            await until(lambda: ingester.stats.blocks_stored >= 12)  # BlockStored events reached the index
            for _ in range(5):  # sequential: no load, so the cached endpoint wins every time
                async with client.post(router.url + "/v1/completions", json=body) as resp:
                    assert resp.status == 200
                    assert resp.headers["X-Routed-To"] == first
            async with client.get(router.url + "/metrics") as resp:
                text = await resp.text()
            assert 'kserve_llmd_router_prefix_match_ratio_bucket{le="1.0"} 6.0' in text
            assert 'kserve_llmd_router_prefix_match_ratio_bucket{le="0.99"} 1.0' in text  # only the cold first
            assert "kserve_llmd_router_kv_events_blocks_stored_total" in text
            # the cold first had no sticky endpoint, so no choice; each repeat kept its sticky endpoint
            assert 'kserve_llmd_router_prefix_affinity_decisions_total{decision="kept"} 5.0' in text
            assert 'kserve_llmd_router_prefix_affinity_decisions_total{decision="yielded"} 0.0' in text


@pytest.mark.parametrize("preset", ["round-robin", "approx-prefix"])
async def test_streaming_through_router_to_simulator(preset: str) -> None:
    async with SimCluster(SimConfig(engines=2, time_scale=0, model="sim")) as sim:
        config = RouterConfig(endpoints=[EndpointSpec(url=e.url, kv_events=e.kv_events) for e in sim.engines],
                              scheduler=load_preset(preset))
        async with Router(config, StaticDiscovery(config.all_endpoints()), rng=random.Random(1)) as router, \
                aiohttp.ClientSession() as client:
            body = {"model": "sim", "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 8,
                    "stream": True, "stream_options": {"include_usage": True}}
            async with client.post(router.url + "/v1/chat/completions", json=body) as resp:
                assert resp.status == 200
                text = (await resp.read()).decode()
            assert text.rstrip().endswith("data: [DONE]")
            assert '"usage"' in text
            assert all(ep.inflight_requests == 0 for ep in router.endpoints)


@pytest.mark.parametrize("speculative", [True, False])
async def test_a_burst_on_a_new_prefix_stays_together_with_speculative_indexing(speculative: bool) -> None:
    # prefill takes ~0.6 s here, so the second request is routed before the first one's BlockStored events arrive
    async with SimCluster(SimConfig(engines=2, time_scale=2000, model="sim")) as sim:
        doc = yaml.safe_load(resources.files("kserve_llmd.router").joinpath("presets/precise-prefix.yaml").read_text())
        scorer = next(p for p in doc["plugins"] if p["type"] == "precise-prefix-cache-scorer")
        scorer["parameters"]["speculativeIndexing"] = speculative
        config = RouterConfig(endpoints=[EndpointSpec(url=e.url, kv_events=e.kv_events) for e in sim.engines],
                              scheduler=parse_scheduler_config(doc), scrape=ScrapeConfig(interval=0.05))
        async with Router(config, StaticDiscovery(config.all_endpoints()), rng=random.Random(1)) as router, \
                aiohttp.ClientSession() as client:
            async def send(question: str, delay: float) -> str:
                await asyncio.sleep(delay)
                body = {"model": "sim", "prompt": PROMPT + question, "max_tokens": 2}
                async with client.post(router.url + "/v1/completions", json=body) as resp:
                    assert resp.status == 200
                    return resp.headers["X-Routed-To"]

            first, second = await asyncio.gather(send(" first?", 0.0), send(" second?", 0.1))
            ingester = router.ingester
            assert ingester is not None
            assert ingester.stats.blocks_stored > 0  # events did flow, only too late for the second request
            if speculative:
                assert second == first  # the speculative entry kept the shared prefix on one engine
            else:
                assert second != first  # blind: the load scorers sent it to the idle engine
