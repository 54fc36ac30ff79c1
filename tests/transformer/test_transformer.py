"""The KServe transformer: argument contract, a real subprocess discovering a simulator engine through the API
double, and ``RouterModel`` through KServe's own data plane (kserve imported inside the tests only)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from kserve_llmd.errors import ConfigError
from kserve_llmd.router.app import Router
from kserve_llmd.router.config import EndpointSpec, RouterConfig, load_preset
from kserve_llmd.router.discovery import StaticDiscovery
from kserve_llmd.simulator import SimCluster, SimConfig
from kserve_llmd.testing.kube_double import KubeApiDouble
from kserve_llmd.transformer.server import build_config, build_discovery, parse_args

CHAT = {"model": "sim-model", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 4}
PROMPT = " ".join(f"word{i}" for i in range(200))  # 200 builtin tokens = 12 full blocks of 16


def test_kserve_arguments_are_accepted_and_unknown_ones_ignored() -> None:
    args = parse_args(["--preset", "round-robin", "--model_name", "m", "--predictor_host", "m-predictor.llm",
                       "--http_port", "8081", "--workers", "2", "--some_future_kserve_flag", "x"])
    assert args.port == 8081
    assert args.ignored == ["--some_future_kserve_flag", "x"]
    assert args.discovery == "static"
    config = build_config(args)
    assert [e.url for e in config.endpoints] == ["http://m-predictor.llm"]


def test_router_settings_reach_the_transformer_through_set() -> None:
    args = parse_args(["--predictor_host", "m-predictor.llm", "--set", "limits.max_body_bytes=33554432",
                       "--set", "timeouts.client_header=30"])
    config = build_config(args)
    assert (config.limits.max_body_bytes, config.timeouts.client_header) == (33554432, 30.0)


def test_selector_means_kubernetes_discovery_and_is_required_for_it() -> None:
    args = parse_args(["--selector", "llm-d.ai/model=m", "--namespace", "llm", "--http_port", "0"])
    assert args.discovery == "kubernetes"
    assert (args.kv_events_port, args.kv_replay_port) == (5557, 5558)  # the rendered runtimes' ports
    with pytest.raises(ConfigError, match="--selector"):
        parse_args(["--discovery", "kubernetes"])
    with pytest.raises(ConfigError, match="no endpoints"):
        build_config(parse_args([]))


@pytest.fixture
async def engine() -> AsyncIterator[SimCluster]:
    async with SimCluster(SimConfig(time_scale=0.0, block_size=4, kv_cache_size=64)) as cluster:
        yield cluster


@pytest.fixture
def double() -> Iterator[KubeApiDouble]:
    with KubeApiDouble(tick_interval=None, validate=False) as server:
        yield server


async def test_transformer_process_routes_to_discovered_pods(
    engine: SimCluster, double: KubeApiDouble, tmp_path: Path
) -> None:
    engine_port = int(engine.engines[0].url.rsplit(":", 1)[1])
    double.put_pod("qwen-predictor-0", namespace="llm", ip="127.0.0.1", ready=True,
                   labels={"llm-d.ai/model": "qwen", "llm-d.ai/role": "both"})
    ready = tmp_path / "ready.json"
    command = [sys.executable, "-m", "kserve_llmd.transformer", "--discovery", "kubernetes", "--namespace", "llm",
               "--selector", "llm-d.ai/model=qwen", "--engine-port", str(engine_port), "--kv-events-port", "0",
               "--preset", "round-robin", "--model_name", "qwen", "--predictor_host", "qwen-predictor.llm",
               "--http_port", "0", "--ready-file", str(ready), "--unknown_kserve_flag", "1"]
    env = {**os.environ, "KSERVE_LLMD_KUBE_HOST": double.url}
    proc = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.PIPE)
    try:
        while not ready.exists():
            assert proc.returncode is None, "the transformer exited early"
            await asyncio.sleep(0.05)
        url = json.loads(ready.read_text())["url"]
        async with aiohttp.ClientSession() as session, session.post(f"{url}/v1/chat/completions", json=CHAT) as r:
            assert r.status == 200
            body = await r.json()
        assert body["choices"][0]["message"]["content"]
        assert ("GET", "/api/v1/namespaces/llm/pods") in double.requests
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, stderr.decode()
    assert "ignoring arguments this transformer does not use: --unknown_kserve_flag 1" in stderr.decode()


@pytest.mark.parametrize("with_replay", [True, False])
async def test_late_router_catches_up_from_the_replay_port_of_discovered_pods(
    double: KubeApiDouble, with_replay: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # argv → build_discovery → KubernetesDiscovery over the API double → Router → the ingester's join replay against
    # the simulator's real replay ROUTER; blocks stored before the router started are indexed only with the port.
    async with SimCluster(SimConfig(time_scale=0, model="sim")) as sim, aiohttp.ClientSession() as client:
        (engine,) = sim.engines
        body = {"model": "sim", "prompt": PROMPT, "max_tokens": 4}
        async with client.post(engine.url + "/v1/completions", json=body) as resp:  # before the router exists
            assert resp.status == 200
        double.put_pod("qwen-predictor-0", namespace="llm", ip="127.0.0.1", ready=True,
                       labels={"llm-d.ai/model": "qwen", "llm-d.ai/role": "both"})
        [http_port, kv_port, replay_port] = [a.rsplit(":", 1)[1] for a in (engine.url, engine.kv_events, engine.replay)]
        args = parse_args(["--selector", "llm-d.ai/model=qwen", "--namespace", "llm", "--http_port", "0",
                           "--preset", "precise-prefix", "--engine-port", http_port, "--kv-events-port", kv_port,
                           "--kv-replay-port", replay_port if with_replay else "0"])
        config = build_config(args)
        caplog.set_level(logging.INFO, logger="kserve_llmd.transformer.server")
        discovery, api_client = build_discovery(args, config, {"KSERVE_LLMD_KUBE_HOST": double.url})
        # the start-up log says where discovery looks (STYLE: the effective configuration is logged at start)
        assert f"KV events {kv_port}, replay {replay_port if with_replay else 'none'}" in caplog.text
        try:
            async with Router(config, discovery, rng=random.Random(1)) as router:
                [endpoint] = router.endpoints
                assert (endpoint.kv_events, endpoint.kv_events_replay) == (
                    engine.kv_events, engine.replay if with_replay else None)
                ingester = router.ingester
                assert ingester is not None
                assert await ingester.wait_joined(30)
                async with client.post(router.url + "/v1/completions", json=body) as resp:
                    assert resp.status == 200
                async with client.get(router.url + "/metrics") as resp:
                    text = await resp.text()
        finally:
            api_client.close()
    if with_replay:
        assert (ingester.stats.replays, ingester.stats.replay_failures) == (1, 0)
        # the router's first request already matched every block the engine had cached
        assert 'kserve_llmd_router_prefix_match_ratio_bucket{le="0.99"} 0.0' in text
    else:
        assert ingester.stats.replays + ingester.stats.replay_failures == 0
        assert 'kserve_llmd_router_prefix_match_ratio_bucket{le="0.99"} 1.0' in text  # a miss: history unseen


async def test_router_model_predicts_through_kserve_data_plane(engine: SimCluster) -> None:
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane

    from kserve_llmd.transformer.model import RouterModel

    config = RouterConfig(endpoints=[EndpointSpec(url=engine.engines[0].url)], scheduler=load_preset("round-robin"))
    async with Router(config, StaticDiscovery(config.all_endpoints())) as router:
        model = RouterModel("qwen", router.url)
        model.load()
        repository = ModelRepository()
        repository.update(model)
        try:
            assert await repository.is_model_ready("qwen")
            response, _ = await DataPlane(repository).infer("qwen", {"instances": [CHAT, {**CHAT, "messages": [
                {"role": "user", "content": "again"}]}]})
            assert [p["object"] for p in response["predictions"]] == ["chat.completion"] * 2
            chunks = [chunk async for chunk in await model.predict({**CHAT, "stream": True})]
            assert b"".join(chunks).rstrip().endswith(b"data: [DONE]")
        finally:
            await model.aclose()
