"""P/D through the router over real HTTP: simulator prefill and decode engines, each behind a ``CaptureDouble`` that
records the bodies each side received. Covers the two-step flow, the decider, the sidecar header and the failures."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from harness import until
from pd_double import CaptureDouble

from kserve_llmd.router.app import Router
from kserve_llmd.router.config import EndpointSpec, RouterConfig, ScrapeConfig, load_preset, parse_scheduler_config
from kserve_llmd.router.discovery import StaticDiscovery
from kserve_llmd.router.interfaces import RequestContext
from kserve_llmd.router.pd import PREFILL_KV_PARAMS, PDConfig
from kserve_llmd.router.tokenization import LocalTokenization
from kserve_llmd.simulator.cluster import SimCluster
from kserve_llmd.simulator.config import SimConfig

MODEL = "sim"
LONG = " ".join(f"long{i}" for i in range(200))  # 200 builtin tokens = 12 full blocks of 16
SHORT = " ".join(f"short{i}" for i in range(40))


@dataclass
class PD:
    router: Router
    client: aiohttp.ClientSession
    prefill: CaptureDouble
    decode: CaptureDouble
    prefill_sim: SimCluster
    decode_sim: SimCluster

    def value(self, name: str, **labels: str) -> float:
        return self.router.metrics.registry.get_sample_value(f"kserve_llmd_router_pd_{name}", labels) or 0.0

    def leases(self) -> int:
        return len(self.prefill_sim.sim_engines[0].leases)


@asynccontextmanager
async def pd_setup(preset: str | dict[str, Any] = "pd-always", *, pd: PDConfig | None = None,
                   prefill_sim: dict[str, Any] | None = None, decode_sim: dict[str, Any] | None = None,
                   prefill_hold: bool = False, prefill_answer: tuple[int, dict[str, Any]] | None = None,
                   pools: bool = True) -> AsyncIterator[PD]:
    scheduler = load_preset(preset) if isinstance(preset, str) else parse_scheduler_config(preset)
    async with SimCluster(SimConfig(time_scale=0, model=MODEL, role="prefill", **(prefill_sim or {}))) as psim, \
            SimCluster(SimConfig(time_scale=0, model=MODEL, role="decode", **(decode_sim or {}))) as dsim, \
            CaptureDouble(psim.engines[0].url, hold=prefill_hold, answer=prefill_answer) as pdouble, \
            CaptureDouble(dsim.engines[0].url) as ddouble:
        config = RouterConfig(prefill=[EndpointSpec(url=pdouble.url)], decode=[EndpointSpec(url=ddouble.url)],
                              scheduler=scheduler, scrape=ScrapeConfig(interval=0.05, stale_after=60.0),
                              pd=pd or PDConfig())
        async with Router(config, StaticDiscovery(config.all_endpoints()), rng=random.Random(3)) as router, \
                aiohttp.ClientSession() as client:
            yield PD(router, client, pdouble, ddouble, psim, dsim)


async def post(pd: PD, body: dict[str, Any], path: str = "/v1/completions",
               headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with pd.client.post(pd.router.url + path, json=body, headers=headers) as resp:
        return resp.status, await resp.read()


def sse_events(raw: bytes) -> list[str]:
    return [line[6:] for line in raw.decode().split("\n\n") if line.startswith("data: ")]


# ------------------------------------------------------------------------------------------- the two steps


async def test_disaggregated_completion_bodies_and_streaming() -> None:
    async with pd_setup("pd-always") as pd:
        body = {"model": MODEL, "prompt": LONG, "max_tokens": 6, "min_tokens": 2, "stream": True,
                "stream_options": {"include_usage": True}, "ignore_eos": True}
        status, raw = await post(pd, body, headers={"X-Request-Id": "req-42"})
        assert status == 200
        events = sse_events(raw)
        assert events[-1] == "[DONE]"
        assert len(events) >= 6  # streamed chunk by chunk, then usage, then [DONE]
        assert '"cached_tokens":199' in events[-2]  # the decode pulled prompt - 1 tokens from the prefill

        [pre] = pd.prefill.captured
        assert pre.headers["X-Request-Id"] == "req-42"
        assert pre.body == {"model": MODEL, "prompt": LONG, "max_tokens": 1, "stream": False, "ignore_eos": True,
                            "kv_transfer_params": PREFILL_KV_PARAMS}
        assert pre.answer is not None
        params = pre.answer["kv_transfer_params"]
        assert params["do_remote_prefill"] is True
        assert params["remote_block_ids"]

        [dec] = pd.decode.captured
        assert dec.headers["X-Request-Id"] == "req-42"
        assert dec.body == {**body, "kv_transfer_params": params}  # the ORIGINAL body + the params verbatim
        assert pd.leases() == 0  # the decode pulled the blocks: the lease is gone
        assert pd.value("decisions_total", decision="disaggregated", reason="always") == 1
        assert pd.value("prefill_latency_seconds_count") == 1


async def test_disaggregated_chat_sets_max_completion_tokens() -> None:
    async with pd_setup("pd-always") as pd:
        body = {"model": MODEL, "messages": [{"role": "user", "content": LONG}], "max_completion_tokens": 5}
        status, raw = await post(pd, body, path="/v1/chat/completions")
        assert status == 200
        assert b'"finish_reason":"length"' in raw
        [pre] = pd.prefill.captured
        assert pre.path == "/v1/chat/completions"
        assert pre.body["max_completion_tokens"] == 1
        assert pre.body["max_tokens"] == 1
        assert pre.body["stream"] is False
        [dec] = pd.decode.captured
        assert dec.body["max_completion_tokens"] == 5
        assert "max_tokens" not in dec.body


# ------------------------------------------------------------------------------------------- the decider


def decider_config(**params: Any) -> dict[str, Any]:
    data = load_preset("pd-decider").model_dump(exclude_none=True)
    for plugin in data["plugins"]:
        if plugin["type"] == "prefix-based-pd-decider":
            plugin["parameters"] = params
    return data


async def test_decider_short_prompt_long_prompt_then_cached_on_decode() -> None:
    async with pd_setup(decider_config(promptTokens=100, nonCachedTokens=64)) as pd:
        assert (await post(pd, {"model": MODEL, "prompt": SHORT, "max_tokens": 2}))[0] == 200
        assert pd.prefill.captured == []
        assert len(pd.decode.captured) == 1
        assert pd.value("decisions_total", decision="aggregated", reason="short-prompt") == 1

        body = {"model": MODEL, "prompt": LONG, "max_tokens": 2}
        assert (await post(pd, body))[0] == 200
        assert len(pd.prefill.captured) == 1
        assert "kv_transfer_params" in pd.decode.captured[-1].body
        assert pd.value("decisions_total", decision="disaggregated", reason="decider") == 1

        # once the decode engine's BlockStored events for the pulled blocks reach the index, the same prompt is
        # cached on the decode endpoint: fewer than nonCachedTokens uncached, so aggregated
        router = pd.router
        tok = router.tokenization
        assert isinstance(tok, LocalTokenization)
        assert router.matcher is not None
        ids = tok.tokenize_sync(body).token_ids
        assert ids is not None
        ctx = RequestContext("probe", MODEL, "/v1/completions", body, prompt_tokens=len(ids), token_ids=ids)
        matcher, endpoints = router.matcher, list(router.endpoints)
        await until(lambda: matcher.match(ctx, endpoints).matched_blocks.get(pd.decode.id, 0) >= 12)
        assert (await post(pd, body))[0] == 200
        assert len(pd.prefill.captured) == 1
        assert "kv_transfer_params" not in pd.decode.captured[-1].body
        assert pd.value("decisions_total", decision="aggregated", reason="cached-on-decode") == 1


# ------------------------------------------------------------------------------------------- sidecar header


async def test_sidecar_header_runs_two_steps_against_a_known_prefill_endpoint() -> None:
    async with pd_setup("precise-prefix") as pd:  # no P/D profile: only the header asks for P/D
        body = {"model": MODEL, "prompt": LONG, "max_tokens": 3}
        assert (await post(pd, body))[0] == 200
        assert pd.prefill.captured == []
        status, _ = await post(pd, body, headers={"x-prefiller-host-port": pd.prefill.id})
        assert status == 200
        [pre] = pd.prefill.captured
        assert pre.body["kv_transfer_params"] == PREFILL_KV_PARAMS
        assert "x-prefiller-host-port" not in pre.headers
        assert "x-prefiller-host-port" not in pd.decode.captured[-1].headers
        assert pd.decode.captured[-1].body["kv_transfer_params"]["do_remote_prefill"] is True
        assert pd.value("decisions_total", decision="disaggregated", reason="header") == 1


@pytest.mark.parametrize("value", ["169.254.169.254:80", "decode", "127.0.0.1:1,127.0.0.1:2", ""])
async def test_sidecar_header_refuses_unknown_endpoints_without_any_outbound_call(value: str) -> None:
    async with pd_setup("pd-always") as pd:
        header = pd.decode.id if value == "decode" else value  # known, but not a prefill endpoint
        status, raw = await post(pd, {"model": MODEL, "prompt": LONG, "max_tokens": 3},
                                 headers={"x-prefiller-host-port": header})
        assert status == 403
        error = orjson.loads(raw)["error"]
        assert error["type"] == "PermissionDeniedError"
        assert error["code"] == 403
        assert pd.prefill.captured == []
        assert pd.decode.captured == []


# ------------------------------------------------------------------------------------------- failures


@pytest.mark.parametrize("fallback", [True, False])
async def test_prefill_5xx_falls_back_to_aggregated_or_fails(fallback: bool) -> None:
    failing = {"failure_injection_rate": 1.0, "failure_types": ("server_error",)}
    async with pd_setup(pd=PDConfig(fallback_to_aggregated=fallback), prefill_sim=failing) as pd:
        status, raw = await post(pd, {"model": MODEL, "prompt": LONG, "max_tokens": 3})
        assert len(pd.prefill.captured) == 1
        if fallback:
            assert status == 200
            [dec] = pd.decode.captured
            assert "kv_transfer_params" not in dec.body
            assert pd.value("fallbacks_total", reason="prefill_error") == 1
        else:
            assert status == 502
            assert b'"BadGatewayError"' in raw
            assert b"answered 500" in raw
            assert pd.decode.captured == []
            assert pd.value("failures_total", stage="prefill", reason="prefill_error") == 1


async def test_prefill_timeout_falls_back() -> None:
    async with pd_setup(pd=PDConfig(prefill_timeout=0.2), prefill_hold=True) as pd:
        status, _ = await post(pd, {"model": MODEL, "prompt": LONG, "max_tokens": 3})
        assert status == 200
        assert "kv_transfer_params" not in pd.decode.captured[0].body
        assert pd.value("fallbacks_total", reason="prefill_timeout") == 1


async def test_prefill_without_kv_transfer_params_falls_back() -> None:
    answer = {"id": "cmpl-x", "object": "text_completion", "choices": [{"index": 0, "text": "a"}]}
    async with pd_setup(prefill_answer=(200, answer)) as pd:
        status, _ = await post(pd, {"model": MODEL, "prompt": LONG, "max_tokens": 3})
        assert status == 200
        assert pd.value("fallbacks_total", reason="prefill_no_params") == 1


async def test_prefill_client_error_is_passed_through() -> None:
    async with pd_setup() as pd:
        status, raw = await post(pd, {"model": MODEL, "prompt": LONG, "max_tokens": 3, "temperature": "hot"})
        assert status == 400
        assert b'"error"' in raw
        assert pd.decode.captured == []
        assert pd.value("failures_total", stage="prefill", reason="prefill_400") == 1


@pytest.mark.parametrize("release", [None, "/_sim/kv_pull"])
async def test_decode_failure_after_prefill(release: str | None) -> None:
    failing = {"failure_injection_rate": 1.0, "failure_types": ("server_error",)}
    async with pd_setup(pd=PDConfig(release_path=release), decode_sim=failing) as pd:
        status, raw = await post(pd, {"model": MODEL, "prompt": LONG, "max_tokens": 3})
        assert status == 500
        assert orjson.loads(raw)["error"]["message"]
        assert len(pd.prefill.captured) == 1
        assert len(pd.decode.captured) == 1
        assert pd.value("failures_total", stage="decode", reason="500") == 1
        if release is None:  # vLLM offers no release: the blocks wait for their lease to end
            assert pd.leases() == 1
        else:
            assert pd.leases() == 0
            assert pd.value("lease_releases_total", outcome="released") == 1


async def test_client_disconnect_during_prefill_never_sends_the_decode() -> None:
    async with pd_setup(prefill_hold=True) as pd:
        task = asyncio.create_task(post(pd, {"model": MODEL, "prompt": LONG, "max_tokens": 3}))
        await pd.prefill.arrived.wait()
        task.cancel()  # closes the client's connection to the router
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: pd.value("failures_total", stage="between_steps", reason="client_disconnected") == 1)
        pd.prefill.release.set()
        assert pd.decode.captured == []
        assert pd.leases() == 0  # the held prefill never reached the engine: nothing stranded
