"""Fixtures of the benchmark tests: ``EngineDouble``, a tiny OpenAI streaming engine on a real loopback socket.

It sleeps exactly ``ttft_s`` before the first chunk and ``itl_s`` before each later chunk, packs
``tokens_per_chunk`` tokens per chunk (engines that batch), ends with a usage chunk and ``[DONE]``, and exposes
vLLM's prefix-cache counters on ``/metrics``. A double is used here because the measurement must be checked against
latencies known exactly, which a real engine cannot give.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web


@dataclass
class EngineDouble:
    ttft_s: float = 0.0
    itl_s: float = 0.0
    tokens_per_chunk: int = 1
    fail_status: int | None = None  # answer every request with this HTTP status
    fail_mid_stream: bool = False  # send an error chunk after the first token
    cached_tokens: int = 3
    hits: float = 0.0
    queries: float = 0.0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    sent_ns: list[list[int]] = field(default_factory=list)  # per request: perf_counter_ns as each text chunk is sent
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        if self.fail_status is not None:
            error = {"error": {"message": "too many requests", "type": "RateLimitError", "code": self.fail_status}}
            return web.json_response(error, status=self.fail_status)
        prompt = body.get("prompt") or " ".join(str(m["content"]) for m in body.get("messages", []))
        prompt_tokens = len(prompt.split())
        self.queries += prompt_tokens
        self.hits += min(self.cached_tokens, prompt_tokens)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chat = "messages" in body
        remaining = int(body["max_tokens"])
        if chat:  # a role-only chunk first, as vLLM sends: it must not count as a token
            await self._send(response, {"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        first = True
        sent: list[int] = []
        self.sent_ns.append(sent)
        while remaining > 0:
            await asyncio.sleep(self.ttft_s if first else self.itl_s)
            sent.append(time.perf_counter_ns())
            n = min(self.tokens_per_chunk, remaining)
            remaining -= n
            text = " ".join(["tok"] * n) + " "
            choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
            await self._send(response, {"choices": [choice]})
            if first and self.fail_mid_stream:
                await self._send(response, {"error": {"message": "engine died", "type": "InternalServerError"}})
                break
            first = False
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": int(body["max_tokens"]),
                 "prompt_tokens_details": {"cached_tokens": min(self.cached_tokens, prompt_tokens)}}
        await self._send(response, {"choices": [], "usage": usage})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    @staticmethod
    async def _send(response: web.StreamResponse, chunk: dict[str, Any]) -> None:
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")

    async def metrics(self, request: web.Request) -> web.Response:
        text = (
            "# TYPE vllm:prefix_cache_queries counter\n"
            f'vllm:prefix_cache_queries_total{{model_name="m",engine="0"}} {self.queries}\n'
            "# TYPE vllm:prefix_cache_hits counter\n"
            f'vllm:prefix_cache_hits_total{{model_name="m",engine="0"}} {self.hits}\n'
        )
        return web.Response(text=text, content_type="text/plain")

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "double-model", "object": "model"}]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/v1/models", self.models)
        return app


@pytest.fixture
async def engine() -> AsyncIterator[EngineDouble]:
    double = EngineDouble()
    runner = web.AppRunner(double.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    double.url = f"http://127.0.0.1:{port}"
    try:
        yield double
    finally:
        await runner.cleanup()
