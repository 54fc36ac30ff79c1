"""Static discovery: the endpoints given on the command line or in the config, never changing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from kserve_llmd.router.config import EndpointSpec
from kserve_llmd.router.endpoints import endpoint_id
from kserve_llmd.router.interfaces import Endpoint, EndpointEvent


class StaticDiscovery:
    """A fixed list of endpoints (``--endpoint``, ``--prefill``, ``--decode``). ``watch`` yields nothing."""

    def __init__(self, specs: Sequence[EndpointSpec]) -> None:
        self._specs = list(specs)
        self._closed = asyncio.Event()

    def snapshot(self) -> Sequence[Endpoint]:
        return [
            Endpoint(id=endpoint_id(s.url), url=s.url, role=s.role, kv_events=s.kv_events,
                     kv_events_replay=s.kv_events_replay)
            for s in self._specs
        ]

    async def watch(self) -> AsyncIterator[EndpointEvent]:
        await self._closed.wait()
        return
        yield  # an async generator that ends when closed

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        self._closed.set()
