"""KV-event ingestion: one ZMQ SUB socket and one task per endpoint, applying events in order to the index.

Data flow::

    engine PUB ──[topic, seq, payload]──▶ SUB (one per endpoint) ──decode_batch──▶ EndpointApplier ──▶ KVIndex
                                               │ gap (seq > last+1)
                                               ▼
    engine ROUTER (replay) ◀──[b"", start]── DEALER: batches [start, seq) applied in order, else reset endpoint

- Endpoint identity comes from the SOCKET the message arrived on; the topic is never parsed (subscribe to ``b""``):
  vLLM's llm-d topic ``kv@ip:port@model``, vllm-router's empty topic and anything else are all accepted.
- Sequence numbers (8-byte big-endian, per publisher): ``seq == last+1`` is applied; ``seq > last+1`` is a gap:
  replay ``[last+1, seq)`` over a DEALER to the endpoint's replay ROUTER, or, without a replay endpoint or when
  replay fails or comes back incomplete, RESET the endpoint (drop its entries, log, count); ``seq <= last`` means
  the engine restarted: reset (the SUB's reconnect is the other, earlier sign of a restart: see "Reconnects").
- Joining (PUB/SUB's "slow joiner"): a SUB receives only what is published after its connection handshake AND
  its subscription reached the publisher; a batch published before that is silently lost, and if nothing follows
  it no gap ever shows (measured on a real vLLM 0.32 with a request sent right after ``connect``: 3 joins in 55
  missed the request's BlockStored). So each endpoint's task first JOINS: it waits for the SUB's handshake (a ZMQ
  socket monitor), then, with ``replay_on_join`` and a replay endpoint, replays every buffered batch from 0 (blocks
  stored before the router started are indexed and can be chained), and only then reads the live stream. Live
  messages that the join replay already applied (published after the subscription, before the replay answered)
  are recognised by (seq, payload hash) and skipped; anything else with ``seq <= last`` is still a restart.
  ``start()`` waits up to ``join_timeout`` for the joins (``wait_joined()`` waits on demand). With a replay
  endpoint nothing published before or after the join is missed. Without one, only the handshake can be awaited:
  the subscription frame follows it on the same connection, so in practice (0 of 40 joins on the real engine) a
  request sent after the join is seen, but PUB/SUB gives no hard guarantee. If the join could not replay (failed,
  timed out), the first live message with ``seq > 0`` retries the best-effort replay from 0 as before.
- Reconnects (a new incarnation of the publisher): the SUB reconnects by itself when its engine dies and comes back
  on the same address, and what the new engine publishes before the reconnect completes is lost, so the sequence
  alone cannot tell a restart (the first batch seen may well be numbered above the last one of the dead engine).
  The socket monitor therefore stays on for the SUB's whole life (``EVENT_DISCONNECTED``,
  ``EVENT_HANDSHAKE_SUCCEEDED``: a few events per connection, none per message) in a small watcher task, and a
  handshake that follows a disconnect is treated as a NEW INCARNATION: the endpoint is reset (entries dropped through
  the applier, last sequence forgotten, ``restarts`` and ``resets`` counted) and, with a replay endpoint, replayed
  from 0 as on join; without one, the next live batch is taken whatever its sequence. The reset runs in the
  endpoint's own task (the watcher only flags it and wakes the task if it is waiting for a message), so it never
  interleaves with a batch or a replay; the per-message loop is unchanged (the flag is read once per wake-up, before
  waiting). A transient TCP reconnect to the SAME engine looks the same and costs one reset + replay (logged).
  Limits: ordering between the monitor and the data stream is not synchronised, so a live batch of the new
  incarnation that was already queued when the handshake is handled is dropped by the reset (with a replay
  endpoint, the replay brings it back); a dead incarnation's entries never survive the reconnect.
- Replay replies (after the DEALER's empty delimiter): vLLM 0.33 ``[topic, seq, payload]`` ending with
  ``[b"", END, b""]``; vLLM <= 0.24 ``[seq, payload]`` ending with ``[END, b""]``. Both accepted.
- Malformed frames and undecodable payloads are dropped and counted; logs are rate-limited (one line per endpoint
  and kind per ``log_interval`` seconds, with the count suppressed since). The loop never dies on input.

Parameters: ``replay_timeout`` (s, per receive, default 2), ``join_timeout`` (s, how long ``start()`` waits for the
joins, default 2; 0 does not wait), ``max_blocks_per_endpoint`` (hash-map bound), ``rcv_hwm`` (ZMQ receive
high-water mark, default 100000 like vLLM's publisher), ``clock`` (for log limiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from kserve_llmd.errors import ConfigError, EventDecodeError
from kserve_llmd.router.interfaces import Endpoint, KVIndex
from kserve_llmd.router.kv_apply import EndpointApplier, IngestStats
from kserve_llmd.types import Clock, EndpointId
from kserve_llmd.wire.kv_events import decode_batch, decode_seq, encode_seq

log = logging.getLogger(__name__)

_DRAIN = 256  # messages taken per wake-up before yielding to the event loop
_NO_STOP = 1 << 64  # replay without an upper bound (every buffered batch)


@dataclass(slots=True)
class _Source:
    applier: EndpointApplier
    zmq_url: str
    replay_url: str | None
    last_seq: int | None = None
    sock: zmq.asyncio.Socket | None = None
    monitor: zmq.asyncio.Socket | None = None  # the SUB's connection monitor (handshakes, disconnects), for its life
    task: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None  # reads ``monitor``
    #: Set by the watcher at the SUB's first handshake; a new one per launch.
    handshake: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set once the task has joined (SUB handshake done, join replay applied); a new one per launch.
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected: bool = False  # the watcher saw a disconnect since the last handshake
    reincarnated: bool = False  # a handshake followed a disconnect: the task resets the endpoint at its next wake-up
    parked: asyncio.Future[list[bytes]] | None = None  # the task's pending receive (the watcher cancels it to wake it)
    #: seq -> hash(payload) of the batches the join replay applied, until the live stream has passed them.
    replayed: dict[int, int] = field(default_factory=dict)
    log_at: dict[str, float] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)


class KVEventIngester:
    """Subscribes to every endpoint's KV events and keeps ``index`` up to date. ``start()`` / ``aclose()``."""

    def __init__(
        self,
        index: KVIndex,
        *,
        stats: IngestStats | None = None,
        clock: Clock = time.monotonic,
        replay_timeout: float = 2.0,
        replay_on_join: bool = True,
        join_timeout: float = 2.0,
        max_blocks_per_endpoint: int = 1_000_000,
        expected_block_size: Callable[[str], int | None] | None = None,
        rcv_hwm: int = 100_000,
        log_interval: float = 10.0,
        context: zmq.asyncio.Context | None = None,
    ) -> None:
        self.index = index
        self.stats = stats if stats is not None else IngestStats()
        #: Block size last seen in a BlockStored event, per model (a default for the matcher's block size).
        self.block_sizes: dict[str, int] = {}
        self._clock = clock
        self._replay_timeout = replay_timeout
        self._replay_on_join = replay_on_join
        self._join_timeout = join_timeout
        self._max_blocks = max_blocks_per_endpoint
        self._expected = expected_block_size
        self._rcv_hwm = rcv_hwm
        self._log_interval = log_interval
        self._ctx = context
        self._owns_ctx = context is None
        self._sources: dict[EndpointId, _Source] = {}
        self._started = False

    # ------------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._started:
            return
        if self._ctx is None:
            self._ctx = zmq.asyncio.Context()
        self._started = True
        for source in self._sources.values():
            self._launch(source)
        if self._sources and self._join_timeout > 0 and not await self.wait_joined(self._join_timeout):
            late = sorted(str(e) for e, s in self._sources.items() if not s.joined.is_set())
            log.warning("KV events: not joined after %.1f s (still trying in the background): %s",
                        self._join_timeout, ", ".join(late))

    async def wait_joined(self, within: float | None = None) -> bool:
        """Wait until every endpoint's subscription is up (handshake done, join replay applied). From then on every
        batch an engine publishes reaches the index (or shows as a gap). False if ``within`` seconds passed first."""
        pending = [s.joined for s in self._sources.values() if s.task is not None and not s.joined.is_set()]
        if not pending:
            return True
        try:
            async with asyncio.timeout(within):
                for joined in pending:
                    await joined.wait()
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        sources = list(self._sources.values())
        for source in sources:
            await self._stop(source)
        if self._ctx is not None and self._owns_ctx:
            self._ctx.term()
            self._ctx = None
        self._started = False

    async def __aenter__(self) -> KVEventIngester:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------------------------------- endpoints

    def add_endpoint(
        self, endpoint: Endpoint, zmq_url: str | None = None, replay_url: str | None = None, *, model: str | None = None
    ) -> None:
        """Subscribe to ``zmq_url`` (default ``endpoint.kv_events``) for ``endpoint``; keys are seeded by ``model``
        (default: the endpoint's only model). Re-adding an endpoint replaces its subscription; its entries are kept
        unless the model changed."""
        url = zmq_url or endpoint.kv_events
        if not url:
            raise ConfigError(f"endpoint {endpoint.id}: no KV-event ZMQ endpoint (kv_events) to subscribe to")
        if model is None:
            if len(endpoint.models) != 1:
                raise ConfigError(
                    f"endpoint {endpoint.id}: pass model= (the base model its KV blocks are keyed by); "
                    f"it serves {sorted(endpoint.models)}"
                )
            (model,) = endpoint.models
        old = self._sources.get(endpoint.id)
        if old is not None:
            self._close_socket(old)
            for task in (old.task, old.watcher):
                if task is not None:
                    task.cancel()
        if old is not None and old.applier.model == model:
            applier = old.applier  # same engine, new address: keep its entries and hash map
        else:
            if old is not None:
                old.applier.reset()
            applier = EndpointApplier(
                endpoint.id, model, self.index, self.stats, max_blocks=self._max_blocks,
                expected_block_size=self._expected, on_block_size=self.block_sizes.__setitem__,
            )
        source = _Source(applier, url, replay_url, last_seq=None if old is None else old.last_seq)
        self._sources[endpoint.id] = source
        if self._started:
            self._launch(source)

    async def remove_endpoint(self, endpoint: EndpointId) -> None:
        """Unsubscribe and drop the endpoint's entries from the index."""
        source = self._sources.pop(endpoint, None)
        if source is not None:
            await self._stop(source)
            source.applier.forget()

    def last_seq(self, endpoint: EndpointId) -> int | None:
        """Sequence number of the last batch taken from this endpoint (None before the first one)."""
        source = self._sources.get(endpoint)
        return None if source is None else source.last_seq

    # ------------------------------------------------------------------------------------------- the loop

    def _launch(self, source: _Source) -> None:
        assert self._ctx is not None
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, self._rcv_hwm)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        # the monitor must exist before connect() so that the first handshake is reported
        source.monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        sock.connect(source.zmq_url)
        source.sock = sock
        source.handshake = asyncio.Event()
        source.joined = asyncio.Event()
        source.disconnected = source.reincarnated = False
        source.parked = None
        source.replayed = {}
        loop = asyncio.get_running_loop()
        name = f"kv-events:{source.applier.endpoint}"
        source.watcher = loop.create_task(self._watch(source, source.monitor), name=name + ":monitor")
        source.task = loop.create_task(self._run(source), name=name)

    async def _stop(self, source: _Source) -> None:
        for task in (source.task, source.watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        source.task = source.watcher = None
        self._close_socket(source)

    @staticmethod
    def _close_monitor(source: _Source) -> None:
        if source.monitor is not None:
            if source.sock is not None:
                with contextlib.suppress(zmq.ZMQError):
                    source.sock.disable_monitor()
            source.monitor.close(linger=0)
            source.monitor = None

    @classmethod
    def _close_socket(cls, source: _Source) -> None:
        cls._close_monitor(source)  # also when the task was cancelled before it ran
        if source.sock is not None:
            source.sock.close(linger=0)
            source.sock = None

    async def _watch(self, source: _Source, monitor: zmq.asyncio.Socket) -> None:
        """The SUB's connection monitor, for the socket's life: the first handshake lets the task join; a handshake
        after a disconnect is a new incarnation of the publisher, which the task handles (see the module doc)."""
        while True:
            try:
                event = parse_monitor_message(await monitor.recv_multipart())
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError:  # the monitor was closed under us (endpoint replaced): nothing left to watch
                return
            except Exception:  # a malformed monitor message: never expected, skip it
                log.exception("KV events from %s: bad socket monitor message", source.applier.endpoint)
                continue
            kind = event["event"]
            if kind == zmq.EVENT_DISCONNECTED:
                source.disconnected = True
                log.debug("KV events from %s: publisher disconnected", source.applier.endpoint)
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if not source.handshake.is_set():
                    source.disconnected = False
                    source.handshake.set()
                elif source.disconnected:
                    source.disconnected = False
                    source.reincarnated = True
                    parked = source.parked
                    if parked is not None and not parked.done():
                        parked.cancel()  # wake the task waiting for a message: it resets before the next one

    async def _reincarnate(self, source: _Source) -> None:
        """The publisher reconnected: a new engine process (or a TCP reconnect to the same one). Drop what the
        endpoint held, forget its sequence, then replay from 0 as on join when a replay endpoint is known."""
        source.reincarnated = False
        self.stats.restarts += 1
        replay = source.replay_url is not None and self._replay_on_join
        self._log(source, "reconnect", "publisher reconnected (engine restart or TCP reconnect): reset%s",
                  ", replay from 0" if replay else "")
        self._reset(source)
        source.last_seq = None
        source.replayed = {}
        if replay:
            await self._replay(source, 0, _NO_STOP, strict=False)

    async def _join(self, source: _Source) -> None:
        """Wait for the SUB's first handshake with the publisher, then replay what was published before it."""
        await source.handshake.wait()
        # The subscription travels right behind the handshake, ahead of our replay request (a new connection):
        # what the engine publishes after answering the replay reaches the SUB, what it published before is in
        # the answer (vLLM's publisher thread serves replays and publishes in turn).
        if source.replay_url is not None and self._replay_on_join and source.last_seq is None:
            await self._replay(source, 0, _NO_STOP, strict=False)

    async def _run(self, source: _Source) -> None:
        sock = source.sock
        assert sock is not None
        try:
            await self._join(source)
        except asyncio.CancelledError:
            raise
        except Exception:  # never expected; the live stream still works (the first message may replay)
            log.exception("KV events from %s: join failed", source.applier.endpoint)
        source.joined.set()
        # A synchronous shadow of the same socket drains what is already queued without one event-loop round
        # trip per message (about 2x the throughput); at most DRAIN messages, then the loop gets a turn.
        drain: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
        task = asyncio.current_task()
        assert task is not None
        while True:
            if source.reincarnated:  # once per wake-up, not per message
                await self._reincarnate(source)
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
            await self._handle(source, frames)
            for _ in range(_DRAIN):
                try:
                    frames = drain.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                await self._handle(source, frames)

    async def _handle(self, source: _Source, frames: list[bytes]) -> None:
        try:
            await self._on_message(source, frames)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not stop ingestion for this endpoint; it is logged with its traceback
            log.exception("KV events from %s: unexpected error, endpoint reset", source.applier.endpoint)
            self._reset(source)

    async def _on_message(self, source: _Source, frames: list[bytes]) -> None:
        if len(frames) != 3:
            self._malformed(source, f"expected 3 frames [topic, seq, payload], got {len(frames)}")
            return
        try:
            seq = decode_seq(frames[1])
        except EventDecodeError as exc:
            self._malformed(source, str(exc))
            return
        if seq < 0:
            self._malformed(source, "end-of-replay marker on the live stream")
            return
        last = source.last_seq
        if source.replayed:
            if last is not None and seq <= last and source.replayed.get(seq) == hash(frames[2]):
                return  # the join replay applied it already: published after the subscription, before the replay
            source.replayed = {}  # the live stream has passed the replayed batches
        if last is None:
            if seq > 0 and source.replay_url and self._replay_on_join:
                await self._replay(source, 0, seq, strict=False)
        elif seq <= last:
            self.stats.restarts += 1
            self._log(source, "restart", "sequence went back from %d to %d (engine restart): reset", last, seq)
            self._reset(source)
        elif seq > last + 1:
            self.stats.gaps += 1
            filled = source.replay_url is not None and await self._replay(source, last + 1, seq, strict=True)
            if not filled:
                self._log(source, "gap", "events %d..%d lost and not replayed: reset", last + 1, seq - 1)
                self._reset(source)
        self._apply(source, seq, frames[2])

    def _apply(self, source: _Source, seq: int, payload: bytes) -> None:
        source.last_seq = seq
        try:
            batch = decode_batch(payload)
        except EventDecodeError as exc:
            self.stats.decode_errors += 1
            self._log(source, "decode", "dropped undecodable batch %d: %s", seq, exc)
            return
        self.stats.batches += 1
        source.applier.apply(batch.events)

    def _reset(self, source: _Source) -> None:
        self.stats.resets += 1
        source.applier.reset()

    # ------------------------------------------------------------------------------------------- replay

    async def _replay(self, source: _Source, start: int, stop: int, *, strict: bool) -> bool:
        """Apply the buffered batches in [start, stop) from the replay socket. True if the range was covered
        without a hole (``strict``: starting exactly at ``start``)."""
        assert self._ctx is not None
        assert source.replay_url is not None
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        expected: int | None = start if strict else None
        complete = False
        try:
            sock.connect(source.replay_url)
            async with asyncio.timeout(self._replay_timeout):
                await sock.send_multipart([b"", encode_seq(start)])
            while True:
                async with asyncio.timeout(self._replay_timeout):
                    frames = await sock.recv_multipart()
                if len(frames) == 4 and frames[0] == b"":
                    frames = frames[1:]  # 0.33: delimiter + [topic, seq, payload]; <= 0.24 reads as [b"", seq, payload]
                if len(frames) not in (2, 3):
                    raise EventDecodeError(f"replay reply of {len(frames)} frames")
                seq = decode_seq(frames[-2])
                if seq < 0:
                    # the join replay (no upper bound) is complete when the end marker comes
                    complete = stop == _NO_STOP or (expected is not None and expected >= stop)
                    break
                if seq >= stop or (source.last_seq is not None and seq <= source.last_seq):
                    continue  # will arrive (or arrived) on the live stream
                if expected is not None and seq != expected:
                    break  # a hole inside the replayed range: the replay buffer no longer reaches back
                self._apply(source, seq, frames[-1])
                if stop == _NO_STOP:  # the join replay: the live stream may deliver these again
                    source.replayed[seq] = hash(frames[-1])
                expected = seq + 1
        except (TimeoutError, EventDecodeError, zmq.ZMQError) as exc:
            self._log(source, "replay", "replay from %d failed: %s", start, exc or type(exc).__name__)
        finally:
            sock.close(linger=0)
        if complete:
            self.stats.replays += 1
        else:
            self.stats.replay_failures += 1
        return complete

    # ------------------------------------------------------------------------------------------- logging

    def _malformed(self, source: _Source, why: str) -> None:
        self.stats.malformed_frames += 1
        self._log(source, "malformed", "dropped malformed message: %s", why)

    def _log(self, source: _Source, kind: str, msg: str, *args: object) -> None:
        now = self._clock()
        if now - source.log_at.get(kind, float("-inf")) < self._log_interval:
            source.suppressed[kind] = source.suppressed.get(kind, 0) + 1
            return
        source.log_at[kind] = now
        suppressed = source.suppressed.pop(kind, 0)
        log.warning("KV events from %s: " + msg + " (%d similar suppressed)", source.applier.endpoint, *args,
                    suppressed)
