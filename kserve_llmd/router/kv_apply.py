"""Applying one endpoint's decoded KV events to the index, in order (no I/O; ``events/`` feeds it).

Per endpoint the applier keeps ``engine hash → own key`` (vLLM's published block hash to the router's key from
``hashing.block_keys``), so that:

- ``BlockStored(block_hashes, parent_block_hash, token_ids, block_size, lora_name, extra_keys)``: the own keys are
  ``block_keys(token_ids, block_size, seed_for(model, lora_name, cache_salt), parent=own[parent_block_hash])``.
  ``parent_block_hash is None`` starts a chain from the seed. A parent the map does not know (events missed, router
  started late, map trimmed) cannot be chained from token content: those blocks are SKIPPED and counted in
  ``unchained_blocks`` (the replay socket, when there is one, is what fills such holes; see ``events/replay.py``).
  ``cache_salt`` is recovered from the first block's ``extra_keys`` (vLLM orders them lora, multimodal, salt: the
  last string that is not the LoRA name). Multimodal extra keys are not modelled: such prompts will not match.
- Copies: vLLM announces a block hash AGAIN when it recomputes a block it already holds (a repeated greedy request
  refilling its decode block: two physical copies of one hash) and sends one ``BlockRemoved`` PER COPY on eviction.
  The map therefore counts copies per engine hash (``_copies`` holds the count only for hashes stored more than
  once, so the common case costs nothing): a ``BlockStored`` of a mapped hash with the same own key adds a copy.
- ``BlockRemoved(block_hashes)``: drops one copy per hash; the endpoint leaves the mapped own key in the index only
  when its LAST copy is removed. Unknown hashes are counted. ``blocks_stored`` / ``blocks_removed`` count copies,
  so ``blocks_stored - blocks_removed`` is the number of live copies the events announced.
  Limit: ``vllm_xargs: {"kv_cache_report_mode": "full"}`` re-announces prefix-cache HITS as ``BlockStored`` without
  a new copy (no ``BlockRemoved`` will match); they are indistinguishable from real copies here and are counted,
  so such a block would stay indexed after its eviction. The router never sets that mode (default "incremental").
- ``AllBlocksCleared``: clears the endpoint from the index and the map.

The map is a ``U64Table`` (``u64table.py``: engine hash and own key as 8 bytes each in typed arrays, about 40
bytes per block by RSS where a dict of two int objects costs ~140), bounded by ``max_blocks`` (oldest mappings
dropped first). vLLM only emits ``BlockRemoved`` on eviction, so the map tracks the engine's real cache size and
the bound only bites when events were lost. A reset (or the endpoint leaving) is ``index.clear(endpoint)``: O(1),
swept lazily (see ``kvindex.py``), where removing the mapped keys one by one would block ~1 us per block.
The model (chain seed) of an endpoint is fixed when it is registered; the LoRA comes from each event.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from kserve_llmd.router.hashing import block_keys, seed_for
from kserve_llmd.router.interfaces import KVIndex
from kserve_llmd.router.u64table import U64Table
from kserve_llmd.types import BlockKey, EndpointId, EngineBlockHash
from kserve_llmd.wire.kv_events import AllBlocksCleared, BlockRemoved, BlockStored, KVEvent

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestStats:
    """Counters of KV-event ingestion (plain ints; the proxy exports them to Prometheus)."""

    batches: int = 0
    events: int = 0
    blocks_stored: int = 0  # block copies announced by BlockStored (a hash stored again counts again)
    blocks_removed: int = 0  # block copies removed by BlockRemoved (known hashes only)
    all_cleared: int = 0
    unchained_blocks: int = 0  # BlockStored blocks skipped: parent unknown
    unknown_removals: int = 0  # BlockRemoved hashes never seen
    block_size_mismatches: int = 0  # BlockStored whose block_size differs from the expected one
    decode_errors: int = 0  # payloads that did not decode (dropped)
    malformed_frames: int = 0  # multipart messages of the wrong shape (dropped)
    gaps: int = 0  # sequence gaps detected
    replays: int = 0  # replay requests that filled their gap
    replay_failures: int = 0  # replay requests that failed or came back incomplete
    resets: int = 0  # endpoint entries dropped (gap without replay, failed replay, restart, publisher reconnect)
    restarts: int = 0  # new publisher incarnation: sequence went back, or the SUB reconnected (events/incarnation.py)


def _salt_from_extra(extra: object, lora: str | None) -> str | None:
    if not isinstance(extra, list | tuple) or not extra:
        return None
    first = extra[0]
    if not isinstance(first, list | tuple):
        return None
    rest = [k for k in first if not (lora is not None and k == lora)]
    return rest[-1] if rest and isinstance(rest[-1], str) else None


class EndpointApplier:
    """Applies one endpoint's events to a shared index. Not thread-safe; one task per endpoint calls it in order."""

    def __init__(
        self,
        endpoint: EndpointId,
        model: str,
        index: KVIndex,
        stats: IngestStats,
        *,
        max_blocks: int = 1_000_000,
        expected_block_size: Callable[[str], int | None] | None = None,
        on_block_size: Callable[[str, int], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.model = model
        self.index = index
        self.stats = stats
        self.max_blocks = max_blocks
        self._expected = expected_block_size
        self._on_block_size = on_block_size
        self._own = _hash_map()  # engine hash → own key, oldest first
        self._copies: dict[EngineBlockHash, int] = {}  # copies held, only for hashes stored more than once

    def __len__(self) -> int:
        return len(self._own)

    def key_for(self, engine_hash: EngineBlockHash) -> BlockKey | None:
        """The own key an engine hash is mapped to (None when unmapped)."""
        e = self._own.find(engine_hash)
        return self._own.values[e] if e else None

    def copies(self, engine_hash: EngineBlockHash) -> int:
        """Copies of the block the events say the engine holds (0 when unmapped)."""
        return self._copies.get(engine_hash, 1) if self._own.find(engine_hash) else 0

    def apply(self, events: list[KVEvent]) -> None:
        for event in events:
            if isinstance(event, BlockStored):
                self._stored(event)
            elif isinstance(event, BlockRemoved):
                self._removed(event)
            elif isinstance(event, AllBlocksCleared):
                self.stats.all_cleared += 1
                self.reset()
        self.stats.events += len(events)

    def reset(self) -> None:
        """Forget everything this endpoint holds: its index entries (``index.clear``: O(1), swept lazily) and
        its hash map. The endpoint stays registered; its next ``BlockStored`` starts afresh."""
        self.index.clear(self.endpoint)
        self._own = _hash_map()
        self._copies.clear()

    def forget(self) -> None:
        """The endpoint is gone: the same as ``reset`` (``index.clear`` also frees its index slot)."""
        self.reset()

    def _stored(self, ev: BlockStored) -> None:
        n = len(ev.block_hashes)
        if self._on_block_size is not None:
            self._on_block_size(self.model, ev.block_size)
        if self._expected is not None:
            expected = self._expected(self.model)
            if expected is not None and expected != ev.block_size:
                self.stats.block_size_mismatches += 1
        lora = ev.lora_name if ev.lora_name is not None else (None if ev.lora_id is None else f"#lora-id:{ev.lora_id}")
        own = self._own
        find, mapped = own.find, own.values
        if ev.parent_block_hash is None:
            parent = None
            seed = seed_for(self.model, lora, _salt_from_extra(ev.extra_keys, lora))
        else:
            e = find(ev.parent_block_hash)
            if not e:
                self.stats.unchained_blocks += n
                return
            parent, seed = mapped[e], 0
        keys = block_keys(ev.token_ids, ev.block_size, seed, parent)
        for engine_hash, key in zip(ev.block_hashes, keys, strict=True):
            e = find(engine_hash)
            if e:
                self._stored_again(engine_hash, key, mapped[e])
                mapped[e] = key
            else:
                own.insert(engine_hash, key)
        while len(own) > self.max_blocks:
            oldest = own.oldest()
            self._copies.pop(own.keys[oldest], None)
            own.delete(oldest)
        self.index.add(self.endpoint, keys, ev.medium)
        self.stats.blocks_stored += n

    def _stored_again(self, engine_hash: EngineBlockHash, key: BlockKey, old: BlockKey) -> None:
        """A hash that was already mapped is stored again: one more copy of the same block. Mapped to ANOTHER key
        (not seen from vLLM: the engine hash covers the same content) the old key stays indexed, unmapped, until
        a reset or LRU drops it, and the copies start over."""
        if old == key:
            self._copies[engine_hash] = self._copies.get(engine_hash, 1) + 1
        else:
            self._copies.pop(engine_hash, None)

    def _removed(self, ev: BlockRemoved) -> None:
        own = self._own
        find, mapped = own.find, own.values
        copies = self._copies
        keys = []
        for engine_hash in ev.block_hashes:
            held = copies.get(engine_hash)
            if held is not None:  # another copy stays: the engine still holds the block
                if held > 2:
                    copies[engine_hash] = held - 1
                else:
                    del copies[engine_hash]
                self.stats.blocks_removed += 1
                continue
            e = find(engine_hash)
            if not e:
                self.stats.unknown_removals += 1
            else:
                keys.append(mapped[e])
                own.delete(e)
                self.stats.blocks_removed += 1
        if keys:
            self.index.remove(self.endpoint, keys)


def _hash_map() -> U64Table:
    return U64Table(values=lambda: array("Q"))
