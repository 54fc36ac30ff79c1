"""``kserve_llmd.aio.stop_tasks``: cancel and wait, without swallowing the caller's own cancellation."""

from __future__ import annotations

import asyncio

import pytest

from kserve_llmd.aio import stop_tasks

pytestmark = pytest.mark.timeout(10)


async def test_stop_cancels_every_task_and_waits_for_its_cleanup() -> None:
    cleaned: list[str] = []

    async def loop(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)  # cleanup that itself takes a step
            cleaned.append(name)

    tasks = [asyncio.create_task(loop(name)) for name in "ab"]
    await asyncio.sleep(0)
    await stop_tasks(tasks[0], None, tasks[1])
    assert cleaned == ["a", "b"]
    assert all(task.cancelled() for task in tasks)


async def test_a_task_that_had_failed_is_logged_and_the_others_still_stopped(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(broken(), name="broken loop")
    waiting = asyncio.create_task(asyncio.Event().wait())
    await asyncio.sleep(0)
    await stop_tasks(failed, waiting)
    assert waiting.cancelled()
    assert "background task broken loop had failed" in caplog.text


async def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # keeps the caller waiting inside stop()

    task = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    caller = asyncio.create_task(stop_tasks(task))
    await asyncio.sleep(0.01)
    caller.cancel()  # e.g. a shutdown deadline
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()
