"""Stopping background tasks: the one place the package cancels a task and waits for it to end."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def stop_tasks(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel every given task (None: skipped), then wait until each has ended.

    A task's own ``CancelledError`` is its normal end. One that had failed is logged, not raised, so one broken
    loop does not keep the rest of a shutdown from running. A cancellation of the CALLER while it waits is not
    swallowed (the plain ``with suppress(CancelledError): await task`` idiom would swallow it)."""
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    for task in live:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception:
            log.exception("background task %s had failed", task.get_name())
