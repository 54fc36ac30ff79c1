"""``SimCluster``: N independent engines in the current event loop, each with its own HTTP port and ZMQ sockets.

::

    async with SimCluster(SimConfig(engines=2, time_scale=0)) as cluster:
        for e in cluster.engines:          # EngineInfo(url, kv_events, replay, role, model)
            ...

``start()`` binds everything (HTTP first, so the KV-event topic can name the real port) and returns once every
listener is up; ``aclose()`` closes HTTP sites, engine loops, ZMQ sockets and the shared client session.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import zmq.asyncio
from aiohttp import web

from kserve_llmd.simulator.api import EngineAPI
from kserve_llmd.simulator.config import SimConfig
from kserve_llmd.simulator.engine import SimEngine
from kserve_llmd.tokenizer import Tokenizer, load_tokenizer
from kserve_llmd.types import Clock, Role

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What a client needs to reach one engine (the ``--ready-file`` entry of CONTRACTS.md)."""

    url: str
    kv_events: str
    replay: str
    role: Role
    model: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SimCluster:
    def __init__(self, config: SimConfig, *, clock: Clock = time.monotonic, tokenizer: Tokenizer | None = None) -> None:
        self.config = config
        self._clock = clock
        self._tokenizer = tokenizer
        self.engines: list[EngineInfo] = []
        self.sim_engines: list[SimEngine] = []
        self._runners: list[web.AppRunner] = []
        self._ctx: zmq.asyncio.Context | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SimCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        cfg = self.config
        tokenizer = self._tokenizer or load_tokenizer(cfg.tokenizer)
        self._ctx = zmq.asyncio.Context()
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                              timeout=aiohttp.ClientTimeout(total=60))
        try:
            for i in range(cfg.engines):
                await self._start_engine(i, tokenizer)
        except BaseException:
            await self.aclose()
            raise
        log.info("simulator up: %d engine(s), model %s, role %s, profile %s, time-scale %s", cfg.engines, cfg.model,
                 cfg.role, cfg.profile if cfg.timing is None else "custom", cfg.time_scale)

    async def _start_engine(self, i: int, tokenizer: Tokenizer) -> None:
        cfg = self.config
        assert self._ctx is not None
        assert self._session is not None
        engine = SimEngine(cfg, i, tokenizer, self._ctx, clock=self._clock)
        self.sim_engines.append(engine)
        await engine.start()
        # handler_cancellation: a client that disconnects cancels its handler, which aborts the request (vLLM).
        runner = web.AppRunner(EngineAPI(engine, self._session).build_app(), access_log=None,
                               handle_signals=False, handler_cancellation=True)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, cfg.host, cfg.port + i if cfg.port else 0, reuse_address=True)
        await site.start()
        port = int(runner.addresses[0][1])
        engine.port = port
        engine.url = f"http://{cfg.host}:{port}"
        engine.publisher.set_topic(cfg.kv_events_topic.format(host=cfg.host, port=port, model=cfg.model))
        self.engines.append(EngineInfo(engine.url, engine.publisher.endpoint, engine.publisher.replay_endpoint,
                                       cfg.role, cfg.model))

    async def aclose(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        for engine in self.sim_engines:
            await engine.aclose()
        self.sim_engines.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def ready_json(self) -> dict[str, Any]:
        return {"engines": [e.to_json() for e in self.engines]}
