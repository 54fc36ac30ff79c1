"""The replay client: ask an engine's replay ROUTER for its buffered batches and apply a range of them in order.

Protocol (REFERENCE 1.1): a DEALER sends ``[b"", start_seq]``; the engine answers every buffered batch with
``seq >= start_seq``, then an end marker whose seq is -1. Frames after the DEALER's empty delimiter: vLLM 0.33
``[topic, seq, payload]`` ending with ``[b"", END, b""]``; vLLM <= 0.24 ``[seq, payload]`` ending with
``[END, b""]``. Both accepted. Each send and receive is bounded by ``receive_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

import zmq
import zmq.asyncio

from kserve_llmd.errors import EventDecodeError
from kserve_llmd.router.events.source import Source
from kserve_llmd.wire.kv_events import decode_seq, encode_seq

#: ``stop`` of a replay without an upper bound (every buffered batch): the join replay.
NO_STOP = 1 << 64


async def replay_batches(
    ctx: zmq.asyncio.Context, url: str, start: int, receive_timeout: float
) -> AsyncGenerator[tuple[int, bytes], None]:
    """``(seq, payload)`` of every buffered batch with ``seq >= start``, as the engine sends them, until the end
    marker. Raises ``TimeoutError``, ``EventDecodeError`` (a reply of the wrong shape) or ``zmq.ZMQError``."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(url)
        async with asyncio.timeout(receive_timeout):
            await sock.send_multipart([b"", encode_seq(start)])
        while True:
            async with asyncio.timeout(receive_timeout):
                frames = await sock.recv_multipart()
            if len(frames) == 4 and frames[0] == b"":
                frames = frames[1:]  # 0.33: delimiter + [topic, seq, payload]; <= 0.24 reads as [b"", seq, payload]
            if len(frames) not in (2, 3):
                raise EventDecodeError(f"replay reply of {len(frames)} frames")
            seq = decode_seq(frames[-2])
            if seq < 0:
                return
            yield seq, frames[-1]
    finally:
        sock.close(linger=0)


async def replay_range(
    source: Source,
    ctx: zmq.asyncio.Context,
    receive_timeout: float,
    start: int,
    stop: int,
    apply: Callable[[int, bytes], None],
    *,
    strict: bool,
) -> bool:
    """Apply the buffered batches in ``[start, stop)`` from ``source``'s replay socket, through ``apply``. True if
    the range was covered without a hole (``strict``: starting exactly at ``start``; with ``stop == NO_STOP``, when
    the end marker came). Batches at or below ``source.last_seq`` or at or above ``stop`` are skipped: they arrived
    (or will arrive) on the live stream. Failures are logged, never raised."""
    assert source.replay_url is not None
    expected: int | None = start if strict else None
    complete = False
    try:
        async with contextlib.aclosing(replay_batches(ctx, source.replay_url, start, receive_timeout)) as batches:
            async for seq, payload in batches:
                if seq >= stop or (source.last_seq is not None and seq <= source.last_seq):
                    continue  # will arrive (or arrived) on the live stream
                if expected is not None and seq != expected:
                    break  # a hole inside the replayed range: the replay buffer no longer reaches back
                apply(seq, payload)
                if stop == NO_STOP:  # the join replay: the live stream may deliver these again
                    source.replayed[seq] = hash(payload)
                expected = seq + 1
            else:  # the end marker came
                complete = stop == NO_STOP or (expected is not None and expected >= stop)
    except (TimeoutError, EventDecodeError, zmq.ZMQError) as exc:
        source.log.warn("replay", "replay from %d failed: %s", start, exc or type(exc).__name__)
    return complete
