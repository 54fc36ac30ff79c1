"""The KV-cache block pool, after vLLM v1's ``BlockPool`` (vllm/v1/core/block_pool.py).

- ``num_blocks`` fixed-size blocks with reference counts.
- Free blocks sit in an LRU queue (oldest-freed at the front). A freed block KEEPS its hash until it is reused,
  so it still produces prefix-cache hits; a hit on a free block takes it out of the queue (``touch``).
- A new block is taken from the front of the queue; if it still carries a hash it is evicted first, which emits
  ``BlockRemoved`` (one event per block, as vLLM does).
- ``cache_full_blocks`` gives hashes to newly full blocks and emits ONE ``BlockStored`` per call
  (hashes, parent hash, concatenated token ids, block size, medium ``GPU``).
- ``reset`` drops every hash (only when no block is in use) and emits ``AllBlocksCleared``.

Events accumulate in ``pending_events`` until the engine drains them once per step. Unlike vLLM there is no
reserved null block: all ``num_blocks`` are usable.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kserve_llmd.wire.kv_events import AllBlocksCleared, BlockRemoved, BlockStored, KVEvent

MEDIUM = "GPU"


@dataclass(slots=True, eq=False)
class Block:
    block_id: int
    ref_cnt: int = 0
    block_hash: int | None = None


class BlockPool:
    """Blocks, reference counts, the LRU free queue and the hash → block map."""

    def __init__(self, num_blocks: int, block_size: int, enable_caching: bool = True) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_caching = enable_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self._free: OrderedDict[int, Block] = OrderedDict((b.block_id, b) for b in self.blocks)
        self._cached: dict[int, dict[int, Block]] = {}
        self.pending_events: list[KVEvent] = []

    # ------------------------------------------------------------------ queries
    @property
    def num_free(self) -> int:
        return len(self._free)

    def usage(self) -> float:
        """Fraction of blocks in use (vLLM's ``kv_cache_usage_perc``, 0..1)."""
        return 1.0 - len(self._free) / self.num_blocks

    def get_cached_block(self, block_hash: int) -> Block | None:
        found = self._cached.get(block_hash)
        if not found:
            return None
        return next(iter(found.values()))

    def free_order(self) -> list[int]:
        """Block ids in eviction order (for tests and debugging)."""
        return list(self._free)

    # ------------------------------------------------------------------ allocation
    def touch(self, blocks: Iterable[Block]) -> None:
        """Take a reference on cache-hit blocks (removing free ones from the LRU queue)."""
        for block in blocks:
            if block.ref_cnt == 0:
                del self._free[block.block_id]
            block.ref_cnt += 1

    def get_new_blocks(self, n: int) -> list[Block]:
        """``n`` blocks from the front of the free queue, evicting their old hashes (BlockRemoved)."""
        if n > len(self._free):
            raise ValueError(f"cannot get {n} free blocks, only {len(self._free)} left")
        out = []
        free = self._free
        for _ in range(n):
            _, block = free.popitem(last=False)
            if block.block_hash is not None:
                self._evict(block)
            block.ref_cnt = 1
            out.append(block)
        return out

    def _evict(self, block: Block) -> None:
        block_hash = block.block_hash
        assert block_hash is not None
        block.block_hash = None
        holders = self._cached.get(block_hash)
        if holders is None or holders.pop(block.block_id, None) is None:
            return
        if not holders:
            del self._cached[block_hash]
        self.pending_events.append(BlockRemoved(block_hashes=[block_hash], medium=MEDIUM, group_idx=0))

    def free_blocks(self, ordered: Iterable[Block]) -> None:
        """Drop one reference on each block; blocks reaching 0 join the tail of the LRU queue in the given order."""
        free = self._free
        for block in ordered:
            block.ref_cnt -= 1
            if block.ref_cnt == 0:
                free[block.block_id] = block

    # ------------------------------------------------------------------ caching
    def cache_full_blocks(self, blocks: Sequence[Block], hashes: Sequence[int], first: int, last: int,
                          token_ids: Sequence[int], root: int) -> None:
        """Give blocks ``first..last-1`` of a request their hashes and publish one ``BlockStored`` for them."""
        if not self.enable_caching or first >= last:
            return
        bs = self.block_size
        new_hashes = []
        for i in range(first, last):
            block = blocks[i]
            if block.block_hash is not None:  # already cached (a prefix hit): nothing new
                continue
            h = hashes[i]
            block.block_hash = h
            self._cached.setdefault(h, {})[block.block_id] = block
            new_hashes.append((i, h))
        if not new_hashes:
            return
        start = new_hashes[0][0]
        self.pending_events.append(BlockStored(
            block_hashes=[h for _, h in new_hashes],
            parent_block_hash=hashes[start - 1] if start > 0 else None,
            token_ids=list(token_ids[start * bs:(new_hashes[-1][0] + 1) * bs]),
            block_size=bs,
            lora_id=None,
            medium=MEDIUM,
            # What vLLM 0.32 sends (docs/real-vllm-findings.md 1.2): one extra-keys entry per block, group 0.
            extra_keys=[None] * len(new_hashes),
            group_idx=0,
            kv_cache_spec_kind="full_attention",
        ))

    def reset(self) -> bool:
        """Forget every hash (vLLM's ``reset_prefix_cache``); refused while any block is in use."""
        if len(self._free) != self.num_blocks:
            return False
        for block in self.blocks:
            block.block_hash = None
        self._cached.clear()
        self.pending_events.append(AllBlocksCleared())
        return True

    def drain_events(self) -> list[KVEvent]:
        events = self.pending_events
        self.pending_events = []
        return events
