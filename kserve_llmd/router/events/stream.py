"""The per-endpoint task: join, then read the SUB and apply each batch in sequence order (see the package doc).

Per message ``[topic, seq, payload]`` (the topic is never read), with ``last`` the last sequence applied::

    wrong shape, bad seq, end marker ──▶ dropped, counted (malformed)
    a live copy of a join-replayed batch ──▶ skipped
    last is None (joined, or after a reset): seq > 0 and a replay endpoint ──▶ best-effort replay [0, seq)
    seq <= last ──▶ engine restart: reset
    seq > last+1 ──▶ gap: replay [last+1, seq) strictly, else reset
    ──▶ apply (an undecodable payload is dropped and counted; its seq still counts as seen)

A new publisher incarnation (flagged by ``incarnation.watch``) is handled at the next wake-up, before waiting:
reset, forget the sequence, replay from 0 when a replay endpoint is known.
"""

from __future__ import annotations

import asyncio
import logging

import zmq
import zmq.asyncio

from kserve_llmd.errors import EventDecodeError
from kserve_llmd.router.events.replay import NO_STOP, replay_range
from kserve_llmd.router.events.source import Settings, Source
from kserve_llmd.router.kv_apply import IngestStats
from kserve_llmd.wire.kv_events import decode_batch, decode_seq

log = logging.getLogger(__name__)

_DRAIN = 256  # messages taken per wake-up before yielding to the event loop


class EndpointStream:
    """The body of one endpoint's task (``run``) and everything it calls. Built per launch of the source."""

    def __init__(self, source: Source, ctx: zmq.asyncio.Context, stats: IngestStats, settings: Settings) -> None:
        self.source = source
        self._ctx = ctx
        self._stats = stats
        self._settings = settings

    async def run(self) -> None:
        source = self.source
        sock = source.sock
        assert sock is not None
        try:
            await self._join()
        except asyncio.CancelledError:
            raise
        except Exception:  # never expected; the live stream still works (the first message may replay)
            log.exception("KV events from %s: join failed", source.endpoint)
        source.joined.set()
        # A synchronous shadow of the same socket drains what is already queued without one event-loop round
        # trip per message (about 2x the throughput); at most DRAIN messages, then the loop gets a turn.
        drain: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
        task = asyncio.current_task()
        assert task is not None
        while True:
            if source.reincarnated:  # once per wake-up, not per message
                await self.reincarnate()
                continue
            # zmq.asyncio returns an asyncio.Future (typed as Awaitable): the watcher may cancel it to wake us
            received: asyncio.Future[list[bytes]] = sock.recv_multipart()  # type: ignore[assignment]
            source.parked = received
            try:
                frames = await received
            except asyncio.CancelledError:
                if task.cancelling() or not received.cancelled() or not source.reincarnated:
                    raise
                continue  # the watcher woke us: a new incarnation of the publisher
            await self._handle(frames)
            for _ in range(_DRAIN):
                try:
                    frames = drain.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                await self._handle(frames)

    async def _join(self) -> None:
        """Wait for the SUB's first handshake with the publisher, then replay what was published before it."""
        await self.source.handshake.wait()
        # The subscription travels right behind the handshake, ahead of our replay request (a new connection):
        # what the engine publishes after answering the replay reaches the SUB, what it published before is in
        # the answer (vLLM's publisher thread serves replays and publishes in turn).
        if self._replays_on_join() and self.source.last_seq is None:
            await self.replay(0, NO_STOP, strict=False)

    async def reincarnate(self) -> None:
        """The publisher reconnected: a new engine process (or a TCP reconnect to the same one). Drop what the
        endpoint held, forget its sequence, then replay from 0 as on join when a replay endpoint is known."""
        source = self.source
        source.reincarnated = False
        self._stats.restarts += 1
        replay = self._replays_on_join()
        source.log.warn("reconnect", "publisher reconnected (engine restart or TCP reconnect): reset%s",
                        ", replay from 0" if replay else "")
        self.reset()
        source.last_seq = None
        source.replayed = {}
        if replay:
            await self.replay(0, NO_STOP, strict=False)

    def _replays_on_join(self) -> bool:
        return self.source.replay_url is not None and self._settings.replay_on_join

    # ------------------------------------------------------------------------------------------- per message

    async def _handle(self, frames: list[bytes]) -> None:
        try:
            await self._on_message(frames)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not stop ingestion for this endpoint; it is logged with its traceback
            log.exception("KV events from %s: unexpected error, endpoint reset", self.source.endpoint)
            self.reset()

    async def _on_message(self, frames: list[bytes]) -> None:
        source = self.source
        if len(frames) != 3:
            self._malformed(f"expected 3 frames [topic, seq, payload], got {len(frames)}")
            return
        try:
            seq = decode_seq(frames[1])
        except EventDecodeError as exc:
            self._malformed(str(exc))
            return
        if seq < 0:
            self._malformed("end-of-replay marker on the live stream")
            return
        last = source.last_seq
        if source.replayed:
            if last is not None and seq <= last and source.replayed.get(seq) == hash(frames[2]):
                return  # the join replay applied it already: published after the subscription, before the replay
            source.replayed = {}  # the live stream has passed the replayed batches
        if last is None:
            if seq > 0 and source.replay_url and self._settings.replay_on_join:
                await self.replay(0, seq, strict=False)
        elif seq <= last:
            self._stats.restarts += 1
            source.log.warn("restart", "sequence went back from %d to %d (engine restart): reset", last, seq)
            self.reset()
        elif seq > last + 1:
            self._stats.gaps += 1
            filled = source.replay_url is not None and await self.replay(last + 1, seq, strict=True)
            if not filled:
                source.log.warn("gap", "events %d..%d lost and not replayed: reset", last + 1, seq - 1)
                self.reset()
        self.apply(seq, frames[2])

    def apply(self, seq: int, payload: bytes) -> None:
        self.source.last_seq = seq
        try:
            batch = decode_batch(payload)
        except EventDecodeError as exc:
            self._stats.decode_errors += 1
            self.source.log.warn("decode", "dropped undecodable batch %d: %s", seq, exc)
            return
        self._stats.batches += 1
        self.source.applier.apply(batch.events)

    def reset(self) -> None:
        self._stats.resets += 1
        self.source.applier.reset()

    async def replay(self, start: int, stop: int, *, strict: bool) -> bool:
        """Apply the replayed batches in ``[start, stop)`` (``replay.replay_range``), counting the outcome."""
        complete = await replay_range(self.source, self._ctx, self._settings.replay_timeout, start, stop, self.apply,
                                      strict=strict)
        if complete:
            self._stats.replays += 1
        else:
            self._stats.replay_failures += 1
        return complete

    def _malformed(self, why: str) -> None:
        self._stats.malformed_frames += 1
        self.source.log.warn("malformed", "dropped malformed message: %s", why)
