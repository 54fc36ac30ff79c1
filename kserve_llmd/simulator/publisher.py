"""KV-event publisher: ZMQ PUB plus a replay ROUTER, with the frames of vLLM 0.33's ``ZmqEventPublisher``.

Live, one multipart message per engine step that had events::

    PUB    → [topic, seq (8-byte BE unsigned, from 0), msgpack EventBatch]

Replay (client: a DEALER sending ``[b"", start_seq (8-byte BE)]``); for every buffered batch with ``seq >= start``
the ROUTER sends ``(client_id, b"", topic, seq, payload)``, then the end marker ``(client_id, b"", b"", END, b"")``
with ``END = -1`` as 8 signed bytes (0xff * 8). The DEALER therefore receives ``[b"", topic, seq, payload]`` and
finally ``[b"", b"", END, b""]``. The buffer keeps the last ``buffer_steps`` batches.

``publish`` never blocks (PUB drops at its high-water mark, as vLLM's does). ``start()`` binds both sockets and
reports the real endpoints; ``aclose()`` stops the replay task and closes the sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

import zmq
import zmq.asyncio

from kserve_llmd.aio import stop_tasks
from kserve_llmd.wire.kv_events import REPLAY_END_SEQ, Encoding, EventBatch, KVEvent, encode_batch

log = logging.getLogger(__name__)

PUB_HWM = 100_000


class KVEventPublisher:
    def __init__(self, ctx: zmq.asyncio.Context, bind: str, replay_bind: str, *, encoding: Encoding,
                 buffer_steps: int, wall_clock: Callable[[], float] = time.time) -> None:
        self._ctx = ctx
        self._bind = bind
        self._replay_bind = replay_bind
        self._encoding: Encoding = encoding
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=buffer_steps)
        self._wall = wall_clock
        self._seq = 0
        self._topic = b""
        self._pub: zmq.Socket[bytes] | None = None
        self._replay: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task[None] | None = None
        self.endpoint = ""
        self.replay_endpoint = ""

    @property
    def next_seq(self) -> int:
        return self._seq

    @property
    def topic(self) -> str:
        return self._topic.decode()

    def set_topic(self, topic: str) -> None:
        """The topic frame (known only once the HTTP port is, since the default template names it)."""
        self._topic = topic.encode()

    async def start(self) -> None:
        # PUB: a plain (synchronous) socket sharing the context; sends are non-blocking so it never stalls the loop.
        pub: zmq.Socket[bytes] = zmq.Context.shadow(self._ctx.underlying).socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, PUB_HWM)
        pub.setsockopt(zmq.LINGER, 0)
        pub.bind(self._bind)
        self._pub = pub
        self.endpoint = _connectable(pub.getsockopt_string(zmq.LAST_ENDPOINT))
        replay = self._ctx.socket(zmq.ROUTER)
        replay.setsockopt(zmq.LINGER, 0)
        replay.bind(self._replay_bind)
        self._replay = replay
        self.replay_endpoint = _connectable(replay.getsockopt_string(zmq.LAST_ENDPOINT))
        self._task = asyncio.get_running_loop().create_task(self._serve_replay(), name="kv-replay")

    def publish(self, events: list[KVEvent]) -> None:
        """Send one EventBatch (one engine step's events) and keep it for replay."""
        if self._pub is None or not events:
            return
        seq = self._seq
        self._seq += 1
        # vLLM's publisher always fills in the rank (0 without data parallelism), as seen on the real engine.
        payload = encode_batch(EventBatch(ts=self._wall(), events=events, data_parallel_rank=0), self._encoding)
        self._buffer.append((seq, payload))
        with contextlib.suppress(zmq.Again):
            self._pub.send_multipart((self._topic, seq.to_bytes(8, "big"), payload), flags=zmq.NOBLOCK)

    async def _serve_replay(self) -> None:
        assert self._replay is not None
        sock = self._replay
        while True:
            frames = await sock.recv_multipart()
            if len(frames) != 3:
                log.warning("invalid replay request with %d frames", len(frames))
                continue
            client_id, _, start = frames
            start_seq = int.from_bytes(start, "big")
            for seq, payload in list(self._buffer):
                if seq >= start_seq:
                    await sock.send_multipart((client_id, b"", self._topic, seq.to_bytes(8, "big"), payload))
            await sock.send_multipart((client_id, b"", b"", REPLAY_END_SEQ, b""))

    async def aclose(self) -> None:
        await stop_tasks(self._task)
        self._task = None
        if self._replay is not None:
            self._replay.close(linger=0)
            self._replay = None
        if self._pub is not None:
            self._pub.close(linger=0)
            self._pub = None


def _connectable(endpoint: str) -> str:
    """``tcp://0.0.0.0:P`` (bound on every interface) → ``tcp://127.0.0.1:P`` so clients can connect to it."""
    return endpoint.replace("tcp://0.0.0.0:", "tcp://127.0.0.1:")
