"""A router over given engines, in the test's event loop (real loopback HTTP, ephemeral ports)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from engine_double import EngineDouble

from kserve_llmd.router.app import Router
from kserve_llmd.router.config import EndpointSpec, RouterConfig, ScrapeConfig, load_preset
from kserve_llmd.router.discovery import StaticDiscovery


@asynccontextmanager
async def running_router(
    engines: Sequence[EngineDouble], preset: str = "round-robin", **overrides: Any
) -> AsyncIterator[Router]:
    scrape = overrides.pop("scrape", ScrapeConfig(interval=0.05, stale_after=60.0))
    config = RouterConfig(
        endpoints=[EndpointSpec(url=e.url) for e in engines],
        scheduler=load_preset(preset),
        scrape=scrape,
        **overrides,
    )
    async with Router(config, StaticDiscovery(config.all_endpoints()), rng=random.Random(7)) as router:
        yield router




async def until(predicate: Callable[[], bool | Awaitable[bool]], step: float = 0.01) -> None:
    """Wait for a condition the test cannot be notified of (the caller's test timeout bounds it)."""
    while True:
        result = predicate()
        if result if isinstance(result, bool) else await result:
            return
        await asyncio.sleep(step)


async def health_is(client: aiohttp.ClientSession, url: str, status: int) -> bool:
    async with client.get(url + "/health") as resp:
        return resp.status == status
