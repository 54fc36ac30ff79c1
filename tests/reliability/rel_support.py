"""Helpers for the reliability tests: a router over given URLs, simulator processes that can be killed, a stub
engine that can hang, and a wait-until helper (no timed assertions: each wait has a bound and says what it waited
for)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from kserve_llmd.router.app import Router
from kserve_llmd.router.config import EndpointSpec, RouterConfig, ScrapeConfig, load_preset
from kserve_llmd.router.discovery import StaticDiscovery


@asynccontextmanager
async def router_over(specs: Sequence[str], preset: str = "round-robin", **overrides: Any) -> AsyncIterator[Router]:
    """A started router over ``URL``, ``URL=PUB`` or ``URL=PUB,REPLAY`` endpoints, in the test's loop."""
    scrape = overrides.pop("scrape", ScrapeConfig(interval=0.05, stale_after=60.0))
    config = RouterConfig(endpoints=[EndpointSpec.parse(s) for s in specs], scheduler=load_preset(preset),
                          scrape=scrape, **overrides)
    async with Router(config, StaticDiscovery(config.all_endpoints()), rng=random.Random(3)) as router:
        yield router


async def until(predicate: Callable[[], bool | Awaitable[bool]], what: str = "the condition", *,
                within: float = 60.0, step: float = 0.02) -> None:
    """Poll ``predicate`` until true; fail with a message naming ``what`` after ``within`` seconds (a bound well
    under the test timeout, never a measurement)."""
    try:
        async with asyncio.timeout(within):
            while True:
                result = predicate()
                if result if isinstance(result, bool) else await result:
                    return
                await asyncio.sleep(step)
    except TimeoutError:
        raise AssertionError(f"timed out after {within:g} s waiting for {what}") from None


def outcome_count(router: Router, outcome: str) -> float:
    total = 0.0
    for metric in router.metrics.requests.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("outcome") == outcome:
                total += sample.value
    return total


@dataclass
class SimProcess:
    """``kserve-llmd sim`` in its own process (so it can be SIGKILLed like a crashing engine)."""

    proc: asyncio.subprocess.Process
    engines: list[dict[str, Any]]

    @property
    def url(self) -> str:
        return str(self.engines[0]["url"])

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def aclose(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
        await self.proc.wait()


async def spawn_sim(tmp: Path, *args: str) -> SimProcess:
    ready = tmp / f"sim-{os.urandom(4).hex()}.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kserve_llmd", "--log-level", "WARNING", "sim", "--port", "0", *args,
        "--ready-file", str(ready), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    while not ready.exists():
        if proc.returncode is not None:
            raise RuntimeError(f"sim exited with {proc.returncode}")
        await asyncio.sleep(0.02)
    return SimProcess(proc, json.loads(ready.read_text())["engines"])


@dataclass
class StubEngine:
    """A vLLM-shaped engine for what the simulator cannot do: ``hang`` (never answers), ``hang_mid_stream``
    (one chunk, then silence), ``ok`` (a one-chunk JSON completion). Records the bodies it received."""

    mode: str = "ok"
    model: str = "m"
    seen: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> StubEngine:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        app.router.add_post("/v1/completions", self._generate)
        app.router.add_post("/v1/chat/completions", self._generate)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text="vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n")

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(await request.read())
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if self.mode == "hang":
            await self._release.wait()
        if self.mode == "hang_mid_stream":
            out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await out.prepare(request)
            await out.write(b'data: {"choices": [{"text": "a"}]}\n\n')
            await self._release.wait()
            return out
        return web.Response(body=orjson.dumps({"choices": [{"text": "ok", "index": 0}]}),
                            content_type="application/json")
