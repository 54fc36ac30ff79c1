"""The traffic split inside the real router (in-process, loopback HTTP): admin API, pinning, weights, auth."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from pydantic import SecretStr

from kserve_llmd.router.app import Router
from kserve_llmd.router.config import EndpointSpec, RouterConfig, load_preset
from kserve_llmd.router.discovery import StaticDiscovery
from kserve_llmd.router.traffic import VERSION_HEADER
from kserve_llmd.simulator.cluster import SimCluster
from kserve_llmd.simulator.config import SimConfig

KEY = "secret"
AUTH = {"Authorization": f"Bearer {KEY}"}


@asynccontextmanager
async def two_versions() -> AsyncIterator[tuple[Router, str, str]]:
    """A router that knows only the stable engine; the canary engine is added by the traffic update."""
    async with SimCluster(SimConfig(time_scale=0)) as stable, SimCluster(SimConfig(time_scale=0, seed=1)) as canary:
        config = RouterConfig(endpoints=[EndpointSpec(url=stable.engines[0].url)], scheduler=load_preset("round-robin"),
                              api_key=SecretStr(KEY))  # fmt: skip
        async with Router(config, StaticDiscovery(config.all_endpoints()), rng=random.Random(5)) as router:
            yield router, stable.engines[0].url, canary.engines[0].url


async def _completed(session: aiohttp.ClientSession, engine_url: str) -> float:
    """Requests an engine finished, from its own vLLM metrics."""
    async with session.get(engine_url + "/metrics") as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:request_success_total"))  # fmt: skip


async def test_split_pin_and_weights_through_the_router() -> None:
    async with two_versions() as (router, stable_url, canary_url), aiohttp.ClientSession() as session:
        assert router.url is not None
        update = {"model": "sim-model", "versions": [
            {"name": "stable", "weight": 3, "endpoints": [stable_url]},
            {"name": "canary", "weight": 1, "endpoints": [canary_url]},
        ]}  # fmt: skip
        async with session.put(router.url + "/admin/traffic", json=update) as response:
            assert response.status == 401  # the router's API key protects the admin API too
        async with session.put(router.url + "/admin/traffic", json=update, headers=AUTH) as response:
            assert response.status == 200
            assert [v["name"] for v in (await response.json())["sim-model"]] == ["stable", "canary"]
        assert len(router.endpoints) == 2  # the canary engine was added before the split went live

        seen: Counter[str] = Counter()
        for _ in range(40):
            version = router.traffic.choose("sim-model", None)
            assert version is not None
            seen[version.name] += 1
        assert set(seen) == {"stable", "canary"}

        before = {url: await _completed(session, url) for url in (stable_url, canary_url)}
        for version, url in (("stable", stable_url), ("canary", canary_url)):
            for _ in range(3):
                body = {"model": "sim-model", "prompt": "hi", "max_tokens": 1}
                headers = {**AUTH, VERSION_HEADER: version}
                async with session.post(router.url + "/v1/completions", json=body, headers=headers) as response:
                    assert response.status == 200
            after = await _completed(session, url)
            assert after - before[url] == 3  # every pinned request went to its version's engine

        bad_pin = {**AUTH, VERSION_HEADER: "nope"}
        body = {"model": "sim-model", "prompt": "hi", "max_tokens": 1}
        async with session.post(router.url + "/v1/completions", json=body, headers=bad_pin) as response:
            assert response.status == 400
            assert "has no version 'nope'" in (await response.json())["error"]["message"]

        async with session.put(router.url + "/admin/traffic", json={"model": "sim-model", "versions": []},
                               headers=AUTH) as response:  # fmt: skip
            assert response.status == 400
        async with session.delete(router.url + "/admin/traffic/sim-model", headers=AUTH) as response:
            assert response.status == 200
            assert await response.json() == {}
        async with session.delete(router.url + "/admin/traffic/sim-model", headers=AUTH) as response:
            assert response.status == 404
