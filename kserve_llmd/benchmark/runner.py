"""Runs a scenario's load levels against one target and returns the records and summaries of each level.

Flow per level: scrape the engines' prefix-cache counters (and the target's prefix-affinity choices, when it is our
router) → send requests on the arrival schedule (Poisson at the
level's QPS, N closed-loop workers, or the trace's own timestamps); the first ``warmup`` requests of the level are
sent the same way but flagged and left out of every statistic → wait for every request → scrape again → summarise.
A ``warmup_stage`` runs first, the same way, every request flagged and nothing summarised (its records are kept in
``warmup_records``). One workload iterator runs through all levels, unless the workload restarts at every level
(``restarts_each_level``: inference-perf's shared-prefix order), which then gets a fresh, identically seeded one.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from kserve_llmd.benchmark import client, engine_metrics
from kserve_llmd.benchmark.arrivals import poisson_offsets
from kserve_llmd.benchmark.progress import Progress
from kserve_llmd.benchmark.records import BenchRequest, NsClock, RequestRecord
from kserve_llmd.benchmark.scenario import Level, Scenario
from kserve_llmd.benchmark.stats import LevelSummary, summarize

_Send = Callable[[BenchRequest, bool], Coroutine[Any, Any, RequestRecord]]


@dataclass(slots=True)
class LevelResult:
    summary: LevelSummary
    records: list[RequestRecord] = field(default_factory=list)


async def discover_model(session: aiohttp.ClientSession, target: str) -> str:
    async with session.get(target.rstrip("/") + "/v1/models", timeout=aiohttp.ClientTimeout(total=30)) as response:
        response.raise_for_status()
        body = await response.json()
    models = body.get("data") or []
    if not models:
        raise ValueError(f"{target}/v1/models lists no model; pass --model")
    return str(models[0]["id"])


class Runner:
    """One scenario against one target. ``rng`` seeds both the workload and the arrivals."""

    def __init__(self, target: str, scenario: Scenario, *, rng: random.Random, clock: NsClock = time.perf_counter_ns,
                 engine_metrics_urls: list[str] | None = None, model: str | None = None,
                 show_progress: bool = True, label: str = "", headers: Mapping[str, str] | None = None) -> None:
        self.target = target
        self.scenario = scenario
        self.clock = clock
        self.engine_metrics_urls = engine_metrics_urls or []
        self.model = model or scenario.model
        self.show_progress = show_progress
        self.label = label
        self.headers = dict(headers or {})  # added to every request (e.g. a router's version pin)
        self.warmup_records: list[RequestRecord] = []  # the warm-up stage's requests (none without one)
        self._workload_seed = rng.getrandbits(64)
        self._arrival_rng = random.Random(rng.getrandbits(64))

    def _workload(self) -> Iterator[BenchRequest]:
        return self.scenario.workload.generate(random.Random(self._workload_seed))

    async def run(self) -> list[LevelResult]:
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            model = self.model or await discover_model(session, self.target)
            restart = self.scenario.workload.restarts_each_level()
            workload = self._workload()
            warmup = self.scenario.load.warmup_level()
            if warmup is not None:
                self.warmup_records = (await self._level(session, model, warmup, workload)).records
            results = []
            for level in self.scenario.load.levels():
                if restart:
                    workload = self._workload()
                results.append(await self._level(session, model, level, workload))
            return results

    def _planned(self, level: Level) -> int | None:
        load = self.scenario.load
        planned = load.num_requests + load.warmup if load.num_requests is not None and level.measured else None
        if level.qps is not None and level.duration_s is not None:  # the warm-up is sent within the duration
            by_time = round(level.qps * level.duration_s)
            planned = by_time if planned is None else min(planned, by_time)
        return planned

    async def _level(self, session: aiohttp.ClientSession, model: str, level: Level,
                     workload: Iterator[BenchRequest]) -> LevelResult:
        load = self.scenario.load
        before = await self._scrape(session) if level.measured else None
        affinity_before = await self._scrape_affinity(session) if level.measured else None
        prefix = f"{self.label} " if self.label else ""
        progress = Progress(f"{prefix}{level.label}", self._planned(level), enabled=self.show_progress)
        origin = self.clock()

        async def one(request: BenchRequest, warmup: bool) -> RequestRecord:
            record = await client.send(session, self.target, request, model, clock=self.clock, level=level.label,
                                       warmup=warmup, origin_ns=origin, timeout_s=load.request_timeout_s,
                                       headers=self.headers)
            progress.advance(record.ok)
            return record

        if level.concurrency is not None:
            records = await self._closed_loop(level, workload, one, origin)
        else:
            records = await self._open_loop(level, workload, one, origin)
        progress.close()
        after = await self._scrape(session) if level.measured else None
        affinity_after = await self._scrape_affinity(session) if affinity_before is not None else None
        summary = summarize(level.label, records, self.scenario.slo, qps=level.qps, concurrency=level.concurrency,
                            x=level.x)
        if isinstance(before, str) or isinstance(after, str):
            summary.engine_metrics_error = before if isinstance(before, str) else str(after)
        elif before is not None and after is not None:
            summary.engine_hit_rate = (after - before).hit_rate
        if affinity_before is not None and affinity_after is not None:
            delta = affinity_after - affinity_before
            summary.affinity_kept, summary.affinity_yielded = round(delta.kept), round(delta.yielded)
        return LevelResult(summary, records)

    def _stop(self, level: Level, sent: int, elapsed_s: float) -> bool:
        load = self.scenario.load
        if level.measured and load.num_requests is not None and sent >= load.num_requests + load.warmup:
            return True
        return level.duration_s is not None and elapsed_s >= level.duration_s

    def _is_warmup(self, level: Level, sent: int) -> bool:
        return not level.measured or sent < self.scenario.load.warmup

    def _schedule(self, level: Level, workload: Iterator[BenchRequest]) -> Iterator[tuple[float, BenchRequest, bool]]:
        """An open-loop level's (send offset in s, request, warm-up?) in order, until the level's stop rule."""
        offsets = poisson_offsets(self._arrival_rng, level.qps) if level.qps is not None else None
        for sent, request in enumerate(workload):
            offset = next(offsets) if offsets is not None else (request.arrival_s or 0.0)
            if self._stop(level, sent, offset):
                return
            yield offset, request, self._is_warmup(level, sent)

    def plan(self) -> Iterator[tuple[Level, list[BenchRequest]]]:
        """What ``run`` would send, level by level (the warm-up stage first), without sending anything. Open-loop
        levels only: a closed loop's sequence depends on response times. Like ``run``, use a Runner once."""
        restart = self.scenario.workload.restarts_each_level()
        workload = self._workload()
        warmup = self.scenario.load.warmup_level()
        for level in ([warmup] if warmup is not None else []) + self.scenario.load.levels():
            if level.concurrency is not None:
                raise ValueError(f"{level.label}: a closed loop's requests depend on response times; no plan")
            if restart and level.measured:
                workload = self._workload()
            yield level, [request for _, request, _ in self._schedule(level, workload)]

    async def _open_loop(self, level: Level, workload: Iterator[BenchRequest], one: _Send,
                         origin: int) -> list[RequestRecord]:
        tasks: list[asyncio.Task[RequestRecord]] = []
        try:
            for offset, request, warmup in self._schedule(level, workload):
                delay = origin + offset * 1e9 - self.clock()
                if delay > 0:
                    await asyncio.sleep(delay / 1e9)
                tasks.append(asyncio.create_task(one(request, warmup)))
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()

    async def _closed_loop(self, level: Level, workload: Iterator[BenchRequest], one: _Send,
                           origin: int) -> list[RequestRecord]:
        records: list[RequestRecord] = []
        sent = 0

        async def worker() -> None:
            nonlocal sent
            while not self._stop(level, sent, (self.clock() - origin) / 1e9):
                request = next(workload, None)
                if request is None:
                    return
                warmup = self._is_warmup(level, sent)
                sent += 1
                records.append(await one(request, warmup))

        await asyncio.gather(*(worker() for _ in range(level.concurrency or 1)))
        return records

    async def _scrape_affinity(self, session: aiohttp.ClientSession) -> engine_metrics.AffinityCounters | None:
        """The target's affinity counters if it is our router (zero choices when its preset has no
        prefix-affinity-filter); None for any other target, or when its /metrics cannot be read: the level is then
        reported without them."""
        try:
            return await engine_metrics.scrape_affinity(session, self.target)
        except (aiohttp.ClientError, ValueError, TimeoutError):
            return None

    async def _scrape(self, session: aiohttp.ClientSession) -> engine_metrics.PrefixCounters | str | None:
        if not self.engine_metrics_urls:
            return None
        try:
            return await engine_metrics.scrape(session, self.engine_metrics_urls)
        except (aiohttp.ClientError, ValueError, TimeoutError) as exc:
            return f"engine metrics scrape failed: {type(exc).__name__}: {exc}"
