"""The router's own HTTP server against real HTTP clients other than aiohttp: httpx (the OpenAI SDK's transport),
requests (urllib3) and the curl binary, in front of the real simulator. Each client must get whole JSON answers and
well-formed SSE streams: every token chunk, the finish reason, then ``data: [DONE]``."""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
import requests

from kserve_llmd.router.app import Router
from kserve_llmd.router.config import EndpointSpec, RouterConfig, load_preset
from kserve_llmd.router.discovery import StaticDiscovery
from kserve_llmd.simulator.cluster import SimCluster
from kserve_llmd.simulator.config import SimConfig

PROMPT = " ".join(f"word{i}" for i in range(400))  # about 3 KB of JSON: over curl's 1 KiB Expect threshold of old
MAX_TOKENS = 6
COMPLETION = {"model": "sim", "prompt": PROMPT, "max_tokens": MAX_TOKENS}
CHAT = {"model": "sim", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS, "stream": True}


@pytest_asyncio.fixture
async def router_url() -> AsyncIterator[str]:
    async with SimCluster(SimConfig(engines=2, time_scale=0, model="sim")) as sim:
        config = RouterConfig(endpoints=[EndpointSpec(url=e.url) for e in sim.engines],
                              scheduler=load_preset("round-robin"))
        async with Router(config, StaticDiscovery(config.all_endpoints()), rng=random.Random(3)) as router:
            yield router.url


def assert_whole_completion(status: int, body: bytes) -> None:
    assert status == 200
    answer = orjson.loads(body)
    assert answer["object"] == "text_completion"
    assert answer["usage"]["completion_tokens"] == MAX_TOKENS
    assert answer["choices"][0]["finish_reason"] == "length"


def assert_whole_stream(status: int, lines: list[str]) -> None:
    assert status == 200
    events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks: list[dict[str, Any]] = [orjson.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "length"
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) == MAX_TOKENS


async def test_httpx_gets_whole_answers_and_streams(router_url: str) -> None:
    async with httpx.AsyncClient(base_url=router_url, timeout=30) as client:
        for _ in range(2):  # the second pair goes over the kept-alive connection
            resp = await client.post("/v1/completions", json=COMPLETION)
            assert_whole_completion(resp.status_code, resp.content)
            async with client.stream("POST", "/v1/chat/completions", json=CHAT) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                assert_whole_stream(stream.status_code, [line async for line in stream.aiter_lines()])


async def test_requests_gets_whole_answers_and_streams(router_url: str) -> None:
    def run() -> None:
        with requests.Session() as session:
            resp = session.post(router_url + "/v1/completions", json=COMPLETION, timeout=30)
            assert_whole_completion(resp.status_code, resp.content)
            with session.post(router_url + "/v1/chat/completions", json=CHAT, stream=True, timeout=30) as stream:
                assert_whole_stream(stream.status_code, list(stream.iter_lines(decode_unicode=True)))

    await asyncio.to_thread(run)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the curl binary is not installed")
@pytest.mark.parametrize("expect", [True, False], ids=["expect-100-continue", "plain"])
async def test_curl_gets_whole_answers_and_streams(router_url: str, expect: bool) -> None:
    async def curl(path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        args = ["curl", "-sS", "-N", "-o", "-", "-w", "\n%{http_code}", "-X", "POST",
                "-H", "Content-Type: application/json", "--data-binary", "@-", router_url + path]
        if expect:  # asked explicitly (curl's own choice depends on its version); with no 100 Continue from the
            # server, curl would wait out --expect100-timeout and hit --max-time first: the test would fail
            args[1:1] = ["-H", "Expect: 100-continue", "--expect100-timeout", "60", "--max-time", "10"]
        proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(orjson.dumps(body))
        assert proc.returncode == 0, err.decode()
        payload, _, code = out.rpartition(b"\n")
        return int(code), payload

    status, payload = await curl("/v1/completions", COMPLETION)
    assert_whole_completion(status, payload)
    status, payload = await curl("/v1/chat/completions", CHAT)
    assert_whole_stream(status, payload.decode().splitlines())
