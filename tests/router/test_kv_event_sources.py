"""``GET /kv_event_sources`` in both shapes the engines answer (vLLM 0.33 array, vLLM 0.32 object keyed by rank)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kserve_llmd.router.interfaces import Endpoint
from kserve_llmd.router.scraper import fetch_kv_event_sources

V032 = {"0": {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": "tcp://*:44999",
              "replay_endpoint": "tcp://*:49449", "topic": "kv@127.0.0.1:35927@tiny-llama"}}
V033 = [{"data_parallel_rank": 1, "endpoint": "tcp://*:6001", "replay_endpoint": None, "topic": ""},
        {"data_parallel_rank": 0, "endpoint": "tcp://0.0.0.0:6000", "replay_endpoint": "tcp://*:6100", "topic": ""}]


async def _ask(body: Any) -> tuple[str, str | None] | None:
    async def sources(_: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/kv_event_sources", sources)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        ep = Endpoint(id=f"127.0.0.1:{server.port}", url=str(server.make_url("")).rstrip("/"))
        return await fetch_kv_event_sources(session, ep, 5.0)


@pytest.mark.parametrize(("body", "expected"), [
    (V032, ("tcp://127.0.0.1:44999", "tcp://127.0.0.1:49449")),
    (V033, ("tcp://127.0.0.1:6000", "tcp://127.0.0.1:6100")),
    ({"sources": V033}, ("tcp://127.0.0.1:6000", "tcp://127.0.0.1:6100")),
])
async def test_both_shapes_give_rank_0_with_the_wildcard_replaced(body: Any, expected: tuple[str, str]) -> None:
    assert await _ask(body) == expected


@pytest.mark.parametrize("body", [{}, [], "nope", {"0": "x"}, [{"endpoint": 5}]])
async def test_no_usable_source_is_none(body: Any) -> None:
    assert await _ask(body) is None
