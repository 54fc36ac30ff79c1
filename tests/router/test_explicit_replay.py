"""``--endpoint URL=PUB,REPLAY`` end to end: argv → RouterConfig → StaticDiscovery → Router → the ingester's join
replay, against the simulator's real ZMQ PUB and replay ROUTER (in process). Blocks an engine stored before the
router started are indexed only when the replay address is given."""

from __future__ import annotations

import random

import aiohttp
import pytest

from kserve_llmd.cli import build_parser
from kserve_llmd.commands import router as router_command
from kserve_llmd.router.app import Router
from kserve_llmd.router.config import RouterConfig
from kserve_llmd.router.discovery import StaticDiscovery
from kserve_llmd.simulator.cluster import SimCluster
from kserve_llmd.simulator.config import SimConfig

PROMPT = " ".join(f"word{i}" for i in range(200))  # 200 builtin tokens = 12 full blocks of 16


@pytest.mark.parametrize("with_replay", [True, False])
async def test_late_router_indexes_earlier_blocks_only_with_an_explicit_replay_address(with_replay: bool) -> None:
    async with SimCluster(SimConfig(engines=1, time_scale=0, model="sim")) as sim, aiohttp.ClientSession() as client:
        (engine,) = sim.engines
        body = {"model": "sim", "prompt": PROMPT, "max_tokens": 4}
        async with client.post(engine.url + "/v1/completions", json=body) as resp:  # before the router exists
            assert resp.status == 200
        spec = f"{engine.url}={engine.kv_events}" + (f",{engine.replay}" if with_replay else "")
        args = build_parser().parse_args(["router", "--port", "0", "--endpoint", spec, "--preset", "precise-prefix"])
        config = router_command.build_config(args)
        assert isinstance(config, RouterConfig)
        assert config.endpoints[0].kv_events_replay == (engine.replay if with_replay else None)
        async with Router(config, StaticDiscovery(config.all_endpoints()), rng=random.Random(1)) as router:
            ingester = router.ingester
            assert ingester is not None
            assert await ingester.wait_joined(30)
            async with client.post(router.url + "/v1/completions", json=body) as resp:
                assert resp.status == 200
            async with client.get(router.url + "/metrics") as resp:
                text = await resp.text()
        if with_replay:
            assert (ingester.stats.replays, ingester.stats.replay_failures) == (1, 0)
            # the router's first request already matched every block the engine had cached
            assert 'kserve_llmd_router_prefix_match_ratio_bucket{le="0.99"} 0.0' in text
        else:
            assert ingester.stats.replays + ingester.stats.replay_failures == 0
            assert 'kserve_llmd_router_prefix_match_ratio_bucket{le="0.99"} 1.0' in text  # a miss: history unseen
