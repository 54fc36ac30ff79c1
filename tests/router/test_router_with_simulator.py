"""The router in front of the real simulator (in process): KV-event discovery, precise prefix routing, streaming."""

from __future__ import annotations

import random

import aiohttp
import pytest
from harness import until

from kserve_llmd.router.app import Router
from kserve_llmd.router.config import EndpointSpec, RouterConfig, ScrapeConfig, load_preset
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
