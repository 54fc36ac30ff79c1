"""``LoopLag``: the worst lateness of the event loop while it is watched (what real-vLLM failures report)."""

from __future__ import annotations

import asyncio
import time

from kserve_llmd.realvllm.probe import LoopLag


async def test_a_blocked_loop_shows_as_lag() -> None:
    async with LoopLag(period=0.01) as lag:
        await asyncio.sleep(0.05)
        time.sleep(0.4)  # noqa: ASYNC251 - the point: the loop cannot run, so the watcher wakes >= 0.39 s late
        await asyncio.sleep(0.05)
    assert lag.worst >= 0.35
    assert str(lag).startswith(f"worst event-loop lag {lag.worst:.2f} s")
    assert lag._task is not None
    assert lag._task.done()  # stopped on exit
