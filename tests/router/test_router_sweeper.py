"""The router finishes the index's lazy clears by itself, with no KV event arriving to drive them."""

from __future__ import annotations

import asyncio

from engine_double import EngineDouble
from harness import running_router, until


async def test_a_cleared_endpoint_is_swept_without_further_events() -> None:
    async with EngineDouble() as eng, running_router([eng], preset="precise-prefix") as router:
        index = router.lru_index
        assert index is not None
        index.sweep_step = 64  # many small steps
        for start in range(0, 20_000, 100):
            index.add("gone", list(range(start, start + 100)))
            index.add("stays", list(range(start, start + 50)))
        index.clear("gone")
        assert index.sweeping  # the clear is lazy: the call returned at once
        async with asyncio.timeout(30):
            await until(lambda: not index.sweeping)
        assert index.blocks_of("gone") == 0
        assert len(index) == 10_000  # only the keys "stays" holds are left
        assert index.match([0, 1, 2], ["gone", "stays"]) == {"gone": 0, "stays": 3}
