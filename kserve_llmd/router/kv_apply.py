"""Applying one endpoint's decoded KV events to the index, in order (no I/O; ``events.py`` feeds it).

Per endpoint the applier keeps ``engine hash → own key`` (vLLM's published block hash to the router's key from
``hashing.block_keys``), so that:

- ``BlockStored(block_hashes, parent_block_hash, token_ids, block_size, lora_name, extra_keys)``: the own keys are
  ``block_keys(token_ids, block_size, seed_for(model, lora_name, cache_salt), parent=own[parent_block_hash])``.
  ``parent_block_hash is None`` starts a chain from the seed. A parent the map does not know (events missed, router
  started late, map trimmed) cannot be chained from token content: those blocks are SKIPPED and counted in
  ``unchained_blocks`` (the replay socket, when there is one, is what fills such holes; see ``events.py``).
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

The map is bounded by ``max_blocks`` (oldest mappings dropped first). vLLM only emits ``BlockRemoved`` on
eviction, so the map tracks the engine's real cache size and the bound only bites when events were lost.
The model (chain seed) of an endpoint is fixed when it is registered; the LoRA comes from each event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from kserve_llmd.router.hashing import block_keys, seed_for
from kserve_llmd.router.interfaces import KVIndex
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
    restarts: int = 0  # new publisher incarnation: sequence went backwards, or the SUB reconnected (see events.py)


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
        self._own: dict[EngineBlockHash, BlockKey] = {}
        self._copies: dict[EngineBlockHash, int] = {}  # copies held, only for hashes stored more than once
        self._exact = True  # False once a mapping was dropped or overwritten (the map may miss index keys)

    def __len__(self) -> int:
        return len(self._own)

    def key_for(self, engine_hash: EngineBlockHash) -> BlockKey | None:
        """The own key an engine hash is mapped to (None when unmapped)."""
        return self._own.get(engine_hash)

    def copies(self, engine_hash: EngineBlockHash) -> int:
        """Copies of the block the events say the engine holds (0 when unmapped)."""
        return 0 if engine_hash not in self._own else self._copies.get(engine_hash, 1)

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
        """Forget everything this endpoint holds (index entries and hash map).

        While the hash map is known to list every key this endpoint added, only those keys are removed
        (O(endpoint's blocks)); otherwise ``index.clear`` scans the whole index (O(index size))."""
        if self._exact:
            self.index.remove(self.endpoint, list(self._own.values()))
        else:
            self.index.clear(self.endpoint)
        self._own.clear()
        self._copies.clear()
        self._exact = True

    def forget(self) -> None:
        """The endpoint is gone: drop its entries and free its index slot (always a full ``index.clear``)."""
        self._own.clear()
        self._copies.clear()
        self._exact = True
        self.index.clear(self.endpoint)

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
        if ev.parent_block_hash is None:
            parent = None
            seed = seed_for(self.model, lora, _salt_from_extra(ev.extra_keys, lora))
        else:
            parent = own.get(ev.parent_block_hash)
            if parent is None:
                self.stats.unchained_blocks += n
                return
            seed = 0
        keys = block_keys(ev.token_ids, ev.block_size, seed, parent)
        get = own.get
        for engine_hash, key in zip(ev.block_hashes, keys, strict=True):
            old = get(engine_hash)
            own[engine_hash] = key
            if old is not None:
                self._stored_again(engine_hash, key, old)
        overflow = len(own) - self.max_blocks
        if overflow > 0:
            self._exact = False
            copies = self._copies
            for stale in [h for h, _ in zip(own, range(overflow), strict=False)]:
                del own[stale]
                copies.pop(stale, None)
        self.index.add(self.endpoint, keys, ev.medium)
        self.stats.blocks_stored += n

    def _stored_again(self, engine_hash: EngineBlockHash, key: BlockKey, old: BlockKey) -> None:
        """A hash that was already mapped is stored again: one more copy of the same block. Mapped to ANOTHER key
        (not seen from vLLM: the engine hash covers the same content) the old key stays indexed but unmapped, so
        the map no longer lists every key (``_exact``) and the copies start over."""
        if old == key:
            self._copies[engine_hash] = self._copies.get(engine_hash, 1) + 1
        else:
            self._copies.pop(engine_hash, None)
            self._exact = False

    def _removed(self, ev: BlockRemoved) -> None:
        own = self._own
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
            key = own.pop(engine_hash, None)
            if key is None:
                self.stats.unknown_removals += 1
            else:
                keys.append(key)
                self.stats.blocks_removed += 1
        if keys:
            self.index.remove(self.endpoint, keys)
