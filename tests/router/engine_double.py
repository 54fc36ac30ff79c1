"""``EngineDouble``: a small, misbehaving vLLM-shaped upstream for the router's proxy-mechanics and fault tests.

It serves ``/v1/models``, ``/metrics``, ``/health``, ``/v1/completions`` and ``/v1/chat/completions`` on an
ephemeral loopback port and can be told to answer normally, return an error, hang before answering, die in the
middle of a stream, or stream chunk by chunk only when the test releases each chunk (``gate``). It records every
request and notices when the router closes a connection it was still answering (``closed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web
from multidict import CIMultiDict

#: ``drop_reused``: a completion request on a connection that already served one is dropped unanswered (the engine
#: closing an idle keep-alive connection just as the router reuses it).
Mode = Literal["ok", "error", "hang", "die_mid_stream", "gated", "drop_reused"]


@dataclass
class Seen:
    path: str
    headers: CIMultiDict[str]
    body: dict[str, Any]


@dataclass
class EngineDouble:
    model: str = "m"
    mode: Mode = "ok"
    chunks: int = 3
    waiting: float = 0.0
    running: float = 0.0
    kv_usage: float = 0.0
    health_status: int = 200
    error_status: int = 400
    loras: list[str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    url: str = ""
    _runner: web.AppRunner | None = None
    #: Streams: when > 0, each chunk carries this many bytes of payload, and ``sent_bytes`` counts what was written.
    chunk_bytes: int = 0
    sent_bytes: int = 0
    _served: weakref.WeakSet[object] = field(default_factory=weakref.WeakSet)  # transports

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        app.router.add_post("/v1/completions", self._generate)
        app.router.add_post("/v1/chat/completions", self._generate)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> EngineDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": self.model, "object": "model", "parent": None}]
        data += [{"id": name, "object": "model", "parent": self.model} for name in self.loras]
        return web.json_response({"object": "list", "data": data})

    async def _metrics(self, request: web.Request) -> web.Response:
        text = (
            f'vllm:num_requests_running{{model_name="{self.model}",engine="0"}} {self.running}\n'
            f'vllm:num_requests_waiting{{model_name="{self.model}",engine="0"}} {self.waiting}\n'
            f'vllm:kv_cache_usage_perc{{model_name="{self.model}",engine="0"}} {self.kv_usage}\n'
        )
        return web.Response(text=text)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=self.health_status)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.seen.append(Seen(request.path, CIMultiDict(request.headers), body))
        if self.mode == "error":
            err = {"error": {"message": "bad thing", "type": "BadRequestError", "param": None, "code": 400}}
            return web.json_response(err, status=self.error_status)
        if self.mode == "drop_reused":
            assert request.transport is not None
            conn = request.transport
            if conn in self._served:
                request.transport.abort()
                return web.Response()
            self._served.add(conn)
        if self.mode == "hang":
            try:
                await asyncio.Event().wait()
            finally:
                self.closed.set()
        if not body.get("stream"):
            return web.json_response({"id": "cmpl-1", "object": "text_completion", "model": body.get("model"),
                                      "choices": [{"index": 0, "text": "hello", "finish_reason": "stop"}]})
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        try:
            for i in range(self.chunks):
                if self.mode == "gated":
                    await self.gate.get()
                text = f"t{i}" if not self.chunk_bytes else f"{i % 10}" * self.chunk_bytes
                await out.write(b"data: " + orjson.dumps({"choices": [{"index": 0, "text": text}]}) + b"\n\n")
                self.sent_bytes += len(text)
                if self.mode == "die_mid_stream":
                    assert request.transport is not None
                    request.transport.close()
                    return out
            await out.write(b"data: [DONE]\n\n")
            await out.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self.closed.set()
            raise
        return out


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released): connecting to it is refused."""
    import socket

    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
