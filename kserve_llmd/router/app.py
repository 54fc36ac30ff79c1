"""``Router``: wires discovery, the endpoint registry, the scraper, the KV-event ingester, the scheduler and the
proxy behind the router's own HTTP server (``server.py``), with a lifespan (``start()`` / ``aclose()``, or
``async with``).

Construction does no I/O (it parses and builds the scheduler, so a bad config fails before anything listens);
``start()`` opens the shared client session, reads each endpoint's models and KV-event source, starts the scrape
and ingest loops, then listens. ``router.url`` is the real address (port 0 → ephemeral).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict

import aiohttp

from kserve_llmd.aio import stop_tasks
from kserve_llmd.errors import ConfigError
from kserve_llmd.router.config import RouterConfig
from kserve_llmd.router.endpoints import EndpointRegistry, endpoint_id
from kserve_llmd.router.events import KVEventIngester
from kserve_llmd.router.interfaces import Discovery, Endpoint, EndpointEvent, PrefixMatcher
from kserve_llmd.router.kvindex import IndexStats, LRUKVIndex, MeteredKVIndex
from kserve_llmd.router.messages import Routes
from kserve_llmd.router.metrics import RouterMetrics
from kserve_llmd.router.pd import build_pd
from kserve_llmd.router.plugins._base import PluginDeps
from kserve_llmd.router.proxy import Proxy
from kserve_llmd.router.registry import MatcherSpec, build_scheduler, parse_scheduler
from kserve_llmd.router.scraper import Scraper, fetch_kv_event_sources
from kserve_llmd.router.server import HttpServer, ServerLimits
from kserve_llmd.router.tokenization import RequestTokenizer, build_tokenization
from kserve_llmd.router.traffic import TrafficAdmin, TrafficSplit
from kserve_llmd.router.upstream import UpstreamPool
from kserve_llmd.types import Clock

log = logging.getLogger(__name__)

#: Connections the admin listener serves at once (probes and scrapes: a handful).
ADMIN_CONNECTIONS = 64

#: Seconds between the sweeper's looks at the index (see ``Router._sweep``).
SWEEP_INTERVAL = 0.05


class Router:
    def __init__(
        self,
        config: RouterConfig,
        discovery: Discovery,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.discovery = discovery
        self.clock = clock
        self.rng = rng if rng is not None else random.Random(config.seed if config.seed is not None
                                                             else int.from_bytes(os.urandom(8), "big"))
        self.metrics = RouterMetrics()
        self.endpoints = EndpointRegistry()
        spec = parse_scheduler(config.scheduler)  # phase 1: every config error surfaces here
        self.matcher_spec = spec.matcher
        self.index_stats = IndexStats()
        #: The prefix index itself (None without a prefix matcher), for the sweeper of its lazy clears.
        self.lru_index: LRUKVIndex | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.ingester: KVEventIngester | None = None
        self.matcher = self._build_matcher(spec.matcher)
        stale = self.metrics.stale
        deps = PluginDeps(clock=clock, rng=self.rng, stale_after=config.scrape.stale_after,
                          on_stale=lambda ep: stale.labels(ep.id).inc())
        self.scheduler = build_scheduler(spec, deps, self.matcher)  # phase 2
        self.tokenization: RequestTokenizer | None = None
        if spec.matcher is not None and spec.matcher.mode == "precise":
            self.tokenization = build_tokenization(config.tokenizer, url_for=self._url_for_model)
        self._session: aiohttp.ClientSession | None = None
        self._replay: dict[str, str | None] = {}
        self._subscribed: dict[str, tuple[str, str]] = {}
        self.scraper = Scraper(config.scrape, self.endpoints, self.session, clock, self.metrics,
                               on_models=self._models_changed)
        #: Canary traffic split per model (``PUT /admin/traffic``); shares the scheduler's seeded RNG.
        self.traffic = TrafficSplit(self.rng)
        #: Prefill/decode: the decider and the two-step flow (also the x-prefiller-host-port sidecar mode).
        self.pd = build_pd(spec, deps, config.pd, self.endpoints, self.session, self.metrics.registry,
                           connect_timeout=config.timeouts.connect)
        self._pool: UpstreamPool | None = None
        self.proxy = Proxy(config, self.endpoints, self.scheduler, self.metrics, self.pool, self.tokenization,
                           traffic=self.traffic, pd=self.pd)
        self.metrics.attach_state(self.endpoints, self._index_stats if spec.matcher is not None else None,
                                  self._client_stats)
        self.routes = Routes()
        self.proxy.add_routes(self.routes)
        TrafficAdmin(self.traffic, auth=self.proxy.authorize, ensure_endpoints=self._ensure_endpoints).add_routes(
            self.routes
        )
        self._server: HttpServer | None = None
        self._admin: HttpServer | None = None
        #: ``http://host:port`` of the admin listener (``admin_port``), once started; None without one.
        self.admin_url: str | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._url: str | None = None

    # ------------------------------------------------------------------------------------------- building

    def _build_matcher(self, spec: MatcherSpec | None) -> PrefixMatcher | None:
        if spec is None:
            return None
        if spec.mode == "approximate":
            from kserve_llmd.router.approx import ApproximateMatcher

            return ApproximateMatcher(chunk_tokens=spec.block_size, capacity=spec.lru_capacity * 8,
                                      index=MeteredKVIndex(self._lru(spec.lru_capacity * 8), self.index_stats),
                                      max_blocks=spec.max_blocks)
        from kserve_llmd.router.matcher import PreciseMatcher
        from kserve_llmd.router.speculative import SpeculativeEntries

        index = MeteredKVIndex(self._lru(), self.index_stats)
        self.ingester = KVEventIngester(index, clock=self.clock)
        ingester = self.ingester
        ttl = spec.speculative_ttl_s
        return PreciseMatcher(index, block_size=lambda m: ingester.block_sizes.get(m),
                              default_block_size=spec.block_size, max_blocks=spec.max_blocks,
                              speculative=None if ttl is None else SpeculativeEntries(ttl, self.clock))

    def _lru(self, capacity: int = 1_000_000) -> LRUKVIndex:
        self.lru_index = LRUKVIndex(capacity)
        return self.lru_index

    async def _sweep(self) -> None:
        """Finish the index's lazy clears (an endpoint removed, an engine restarted) in small steps, even when no KV
        event arrives to drive them: each step is under a millisecond, and the loop yields between steps."""
        index = self.lru_index
        assert index is not None
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            while index.sweeping:
                index.sweep()
                await asyncio.sleep(0)

    def _index_stats(self) -> dict[str, float]:
        out: dict[str, float] = {f"index_{k}_total": float(v) for k, v in asdict(self.index_stats).items()}
        if self.ingester is not None:
            out.update({f"events_{k}_total": float(v) for k, v in asdict(self.ingester.stats).items()})
            out["index_entries"] = float(len(self.ingester.index))
        return out

    def _url_for_model(self, model: str) -> str | None:
        for ep in self.endpoints.candidates(model):
            return ep.url
        return None

    @property
    def url(self) -> str:
        """``http://host:port`` the router listens on (after ``start()``)."""
        if self._url is None:
            raise RuntimeError("the router is not started")
        return self._url

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the router is not started")
        return self._session

    def pool(self) -> UpstreamPool:
        """The proxy's upstream connections (``upstream.py``); the session above serves everything else."""
        if self._pool is None:
            raise RuntimeError("the router is not started")
        return self._pool

    # ------------------------------------------------------------------------------------------- lifespan

    async def start(self) -> None:
        cfg = self.config
        log.info("router config: %s", cfg.model_dump_json(exclude={"api_key"}))
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=cfg.limits.connections_per_host,
                                         keepalive_timeout=60, enable_cleanup_closed=True)
        # no cookie jar: a proxy must not carry one engine answer's cookies into other clients' requests
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                              timeout=aiohttp.ClientTimeout(total=None),
                                              cookie_jar=aiohttp.DummyCookieJar())
        t = cfg.timeouts
        self._pool = UpstreamPool(connect_timeout=t.connect, idle_timeout=t.first_byte, total_timeout=t.total,
                                  max_idle_per_origin=cfg.limits.connections_per_host)
        try:
            await self.discovery.start()
            await asyncio.gather(*(self._add(ep) for ep in self.discovery.snapshot()))
            await self.scraper.start()
            if self.ingester is not None:
                await self.ingester.start()
            self._watch_task = asyncio.create_task(self._watch(), name="router discovery watch")
            if self.lru_index is not None:
                self._sweeper = asyncio.create_task(self._sweep(), name="router index sweeper")
            self._server = HttpServer(self.routes, ServerLimits(
                max_body=cfg.limits.max_body_bytes, max_field=cfg.limits.max_header_bytes,
                idle_timeout=cfg.timeouts.client_idle, header_timeout=cfg.timeouts.client_header,
                max_connections=cfg.limits.max_connections))
            host, port = await self._server.start(cfg.host, cfg.port, cfg.limits.listen_backlog)
            if cfg.admin_port is not None:
                admin_routes = Routes()
                self.proxy.add_admin_routes(admin_routes)
                self._admin = HttpServer(admin_routes, ServerLimits(
                    max_body=0, max_field=4096, idle_timeout=cfg.timeouts.client_idle,
                    header_timeout=cfg.timeouts.client_header, max_connections=ADMIN_CONNECTIONS))
                admin_host, admin_port = await self._admin.start(cfg.host, cfg.admin_port, ADMIN_CONNECTIONS)
                self.admin_url = f"http://{admin_host}:{admin_port}"
        except BaseException:
            await self.aclose()
            raise
        self._url = f"http://{host}:{port}"
        log.info("router listening on %s with %d endpoint(s)%s", self._url, len(self.endpoints),
                 f"; /health and /metrics also on {self.admin_url}" if self.admin_url else "")

    def _client_stats(self) -> tuple[int, dict[str, int]]:
        server = self._server
        return (0, {}) if server is None else (len(server.connections), server.refusals)

    async def drain(self) -> None:
        """Before stopping (SIGTERM): keep serving for ``timeouts.drain_delay`` while ``/health`` answers 503, so the
        Service stops sending here before the listener closes (clients whose proxies still route here are served,
        not refused)."""
        delay = self.config.timeouts.drain_delay
        if delay <= 0:
            return
        self.proxy.draining = True
        log.info("draining for %.1f s before stopping: /health now answers 503", delay)
        await asyncio.sleep(delay)

    async def aclose(self) -> None:
        if self._server is not None:
            await self._server.aclose(self.config.timeouts.shutdown_grace)
            self._server = None
        if self._admin is not None:
            await self._admin.aclose(0)
            self._admin = None
        await stop_tasks(self._watch_task, self._sweeper)
        self._watch_task = self._sweeper = None
        await self.scraper.aclose()
        if self.ingester is not None:
            await self.ingester.aclose()
        if self.tokenization is not None:
            await self.tokenization.aclose()
        await self.discovery.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def __aenter__(self) -> Router:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------------------------------- endpoints

    async def _add(self, ep: Endpoint) -> None:
        current = self.endpoints.apply(EndpointEvent("added", ep))
        assert current is not None
        # one round before serving: models (for routing), metrics and health (for scoring)
        await self.scraper.poll(current)
        self.scraper.add(current)
        if self.ingester is not None and current.kv_events is None:
            found = await fetch_kv_event_sources(self.session(), current, self.config.scrape.timeout)
            if found is not None:
                current.kv_events, replay = found
                self._replay[current.id] = replay
        self._subscribe(current)

    async def _ensure_endpoints(self, urls: Sequence[str]) -> None:
        """Add endpoints a traffic split names that the router does not know yet (before the split goes live)."""
        for url in urls:
            if self.endpoints.get(endpoint_id(url)) is None:
                await self._add(Endpoint(id=endpoint_id(url), url=url.rstrip("/")))

    def _models_changed(self, ep: Endpoint) -> None:
        self._subscribe(ep)

    def _subscribe(self, ep: Endpoint) -> None:
        if self.ingester is None or ep.kv_events is None:
            return
        bases = self.endpoints.base_models(ep)
        if len(bases) != 1:
            if bases:
                log.warning("endpoint %s serves several base models %s; KV events not followed", ep.id, bases)
            return
        if self._subscribed.get(ep.id) == (ep.kv_events, bases[0]):
            return
        try:
            self.ingester.add_endpoint(ep, ep.kv_events, self._replay.get(ep.id), model=bases[0])
            self._subscribed[ep.id] = (ep.kv_events, bases[0])
        except ConfigError as exc:
            log.warning("endpoint %s: KV events not followed: %s", ep.id, exc)

    async def _watch(self) -> None:
        async for event in self.discovery.watch():
            if event.kind == "removed":
                await self.scraper.remove(event.endpoint.id)
                if self.ingester is not None:
                    await self.ingester.remove_endpoint(event.endpoint.id)
                    self._subscribed.pop(event.endpoint.id, None)
                forget = getattr(self.matcher, "remove_endpoint", None)
                if forget is not None and self.ingester is None:
                    forget(event.endpoint.id)
                self.endpoints.apply(event)
            else:
                await self._add(event.endpoint)
