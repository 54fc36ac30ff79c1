"""``KVEventIngester``: the endpoints' subscriptions and their lifecycle. Each endpoint gets a ``Source`` (its
state and SUB socket), a watcher task on the socket's monitor (``incarnation.watch``) and a task that applies its
batches in order (``EndpointStream.run``). The design is in the package docstring (``events/__init__.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import zmq.asyncio

from kserve_llmd.aio import stop_tasks
from kserve_llmd.errors import ConfigError
from kserve_llmd.router.events.incarnation import watch
from kserve_llmd.router.events.source import EndpointLog, Settings, Source
from kserve_llmd.router.events.stream import EndpointStream
from kserve_llmd.router.interfaces import Endpoint, KVIndex
from kserve_llmd.router.kv_apply import EndpointApplier, IngestStats
from kserve_llmd.types import Clock, EndpointId

log = logging.getLogger(__name__)


class KVEventIngester:
    """Subscribes to every endpoint's KV events and keeps ``index`` up to date. ``start()`` / ``aclose()``.

    Parameters: ``replay_timeout`` (s, per receive, default 2), ``replay_on_join`` (replay from 0 when joining and
    on a reconnect, default true), ``join_timeout`` (s, how long ``start()`` waits for the joins, default 2; 0 does
    not wait), ``max_blocks_per_endpoint`` (hash-map bound), ``expected_block_size`` (per model, for the mismatch
    count), ``rcv_hwm`` (ZMQ receive high-water mark, default 100000 like vLLM's publisher), ``log_interval`` (s,
    per endpoint and kind of warning), ``clock`` (for log limiting), ``context`` (a ZMQ context to share; by default
    one is created at ``start()`` and terminated at ``aclose()``).
    """

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
        self._settings = Settings(replay_timeout=replay_timeout, replay_on_join=replay_on_join, rcv_hwm=rcv_hwm,
                                  log_interval=log_interval, clock=clock)
        self._join_timeout = join_timeout
        self._max_blocks = max_blocks_per_endpoint
        self._expected = expected_block_size
        self._ctx = context
        self._owns_ctx = context is None
        self._sources: dict[EndpointId, Source] = {}
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
        """Subscribe to ``zmq_url`` (default ``endpoint.kv_events``) for ``endpoint``, replaying from ``replay_url``
        (default ``endpoint.kv_events_replay``; None: no replay); keys are seeded by ``model`` (default: the
        endpoint's only model). Re-adding an endpoint replaces its subscription; its entries are kept unless the
        model changed."""
        url = zmq_url or endpoint.kv_events
        if not url:
            raise ConfigError(f"endpoint {endpoint.id}: no KV-event ZMQ endpoint (kv_events) to subscribe to")
        replay = replay_url or endpoint.kv_events_replay
        if model is None:
            if len(endpoint.models) != 1:
                raise ConfigError(
                    f"endpoint {endpoint.id}: pass model= (the base model its KV blocks are keyed by); "
                    f"it serves {sorted(endpoint.models)}"
                )
            (model,) = endpoint.models
        old = self._sources.get(endpoint.id)
        if old is not None:
            old.close()
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
        settings = self._settings
        source = Source(applier, url, replay, EndpointLog(endpoint.id, settings.clock, settings.log_interval),
                        last_seq=None if old is None else old.last_seq)
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

    # ------------------------------------------------------------------------------------------- tasks

    def _launch(self, source: Source) -> None:
        assert self._ctx is not None
        monitor = source.open(self._ctx, self._settings.rcv_hwm)
        stream = EndpointStream(source, self._ctx, self.stats, self._settings)
        loop = asyncio.get_running_loop()
        name = f"kv-events:{source.endpoint}"
        source.watcher = loop.create_task(watch(source, monitor), name=name + ":monitor")
        source.task = loop.create_task(stream.run(), name=name)

    @staticmethod
    async def _stop(source: Source) -> None:
        await stop_tasks(source.task, source.watcher)
        source.task = source.watcher = None
        source.close()
