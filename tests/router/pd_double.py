"""``CaptureDouble``: a capturing proxy in front of one REAL simulator engine, for the P/D tests.

The simulator builds its aiohttp apps inside ``SimCluster`` with no hook for middleware, so the tests put this
double between the router and an engine: it records every ``/v1/*`` request (path, headers, JSON body, and the
JSON answer when it is not streamed) and forwards everything else untouched (``/metrics``, ``/health``,
``/v1/models``, ``/kv_event_sources``), streaming answers back chunk by chunk. It can hold ``/v1/*`` requests until
``release`` is set (a slow or hung prefill) or answer them itself (``answer``: an engine that misbehaves).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict

_HOP = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@dataclass
class Captured:
    path: str
    headers: CIMultiDict[str]
    body: dict[str, Any]
    answer: dict[str, Any] | None = None


class CaptureDouble:
    def __init__(self, target: str, *, hold: bool = False, answer: tuple[int, dict[str, Any]] | None = None) -> None:
        self.target = target
        self.captured: list[Captured] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.answer = answer
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def id(self) -> str:
        return self.url.removeprefix("http://")

    async def __aenter__(self) -> CaptureDouble:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession(auto_decompress=False)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        seen: Captured | None = None
        if request.path.startswith("/v1/") and request.method == "POST":
            seen = Captured(request.path, CIMultiDict(request.headers), orjson.loads(raw))
            self.captured.append(seen)
            self.arrived.set()
            await self.release.wait()
            if self.answer is not None:
                status, canned = self.answer
                return web.json_response(canned, status=status)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(request.method, self.target + request.path_qs, data=raw or None,
                                         headers=headers) as upstream:
            out = web.StreamResponse(status=upstream.status)
            out.content_type = upstream.content_type
            await out.prepare(request)
            body = b""
            async for chunk in upstream.content.iter_any():
                body += chunk
                await out.write(chunk)
            await out.write_eof()
        if seen is not None and upstream.content_type == "application/json":
            seen.answer = orjson.loads(body)
        return out
