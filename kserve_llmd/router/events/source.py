"""One endpoint's ingestion state: its SUB socket with the connection monitor, its sequence bookkeeping, and the
rate-limited warnings every part of the ingestion logs through. No task runs here (``stream.py``,
``incarnation.py``); ``Source.open`` / ``Source.close`` are the only socket calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import zmq
import zmq.asyncio

from kserve_llmd.router.kv_apply import EndpointApplier
from kserve_llmd.types import Clock, EndpointId

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Settings:
    """The ingester's parameters that its per-endpoint parts read (see ``KVEventIngester``)."""

    replay_timeout: float
    replay_on_join: bool
    rcv_hwm: int
    log_interval: float
    clock: Clock


class EndpointLog:
    """Warnings about one endpoint: at most one line per kind per ``interval`` seconds, with the count of the
    lines suppressed since the last one."""

    def __init__(self, endpoint: EndpointId, clock: Clock, interval: float) -> None:
        self._endpoint = endpoint
        self._clock = clock
        self._interval = interval
        self._at: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, kind: str, msg: str, *args: object) -> None:
        now = self._clock()
        if now - self._at.get(kind, float("-inf")) < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._at[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        log.warning("KV events from %s: " + msg + " (%d similar suppressed)", self._endpoint, *args, suppressed)


@dataclass(slots=True)
class Source:
    """An endpoint's subscription. It outlives relaunches of its socket (``open`` resets the per-launch state)."""

    applier: EndpointApplier
    zmq_url: str
    replay_url: str | None
    log: EndpointLog
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

    @property
    def endpoint(self) -> EndpointId:
        return self.applier.endpoint

    def open(self, ctx: zmq.asyncio.Context, rcv_hwm: int) -> zmq.asyncio.Socket:
        """Create and connect the SUB (subscribed to every topic) and its monitor; returns the monitor socket."""
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, rcv_hwm)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        # the monitor must exist before connect() so that the first handshake is reported
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        self.sock, self.monitor = sock, monitor
        sock.connect(self.zmq_url)
        self.handshake = asyncio.Event()
        self.joined = asyncio.Event()
        self.disconnected = self.reincarnated = False
        self.parked = None
        self.replayed = {}
        return monitor

    def close(self) -> None:
        """Close the monitor, then the SUB (also when the task was cancelled before it ran)."""
        if self.monitor is not None:
            if self.sock is not None:
                with contextlib.suppress(zmq.ZMQError):
                    self.sock.disable_monitor()
            self.monitor.close(linger=0)
            self.monitor = None
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None
