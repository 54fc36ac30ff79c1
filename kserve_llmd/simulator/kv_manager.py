"""Per-request KV-cache bookkeeping on top of ``BlockPool``, after vLLM v1's ``KVCacheManager``.

- ``computed_blocks(req)``: the longest run of cached blocks matching the request's leading FULL blocks, capped so
  at least the last token is recomputed (``max_hit = num_tokens - 1``), as vLLM does to get logits.
- ``allocate_slots(req, n, hits)``: reserve blocks for ``n`` more tokens (after taking the hit blocks), or return
  ``False`` when not enough blocks can be freed; newly FULL blocks are hashed and cached right away (vLLM caches at
  allocation, for tokens the step will compute).
- ``free(req)``: release in REVERSE order, so a request's tail blocks are evicted before its shared head.
"""

from __future__ import annotations

from kserve_llmd.simulator.block_pool import Block, BlockPool
from kserve_llmd.simulator.hashing import extend_block_hashes, salt_extra
from kserve_llmd.simulator.request import SimRequest


class KVCacheManager:
    def __init__(self, pool: BlockPool, root_hash: int) -> None:
        self.pool = pool
        self.block_size = pool.block_size
        self.root_hash = root_hash
        self._blocks: dict[SimRequest, list[Block]] = {}
        self._num_cached: dict[SimRequest, int] = {}

    def _hashes(self, req: SimRequest) -> list[int]:
        extend_block_hashes(req.block_hashes, req.token_ids, self.block_size, self.root_hash,
                            salt_extra(req.cache_salt))
        return req.block_hashes

    def blocks_of(self, req: SimRequest) -> list[Block]:
        return self._blocks.get(req, [])

    def computed_blocks(self, req: SimRequest) -> tuple[list[Block], int]:
        """Cache-hit blocks for a request not yet holding any, and the number of hit tokens."""
        if not self.pool.enable_caching:
            return [], 0
        max_blocks = (req.num_tokens - 1) // self.block_size
        hits: list[Block] = []
        pool = self.pool
        for h in self._hashes(req)[:max_blocks]:
            block = pool.get_cached_block(h)
            if block is None:
                break
            hits.append(block)
        return hits, len(hits) * self.block_size

    def allocate_slots(self, req: SimRequest, num_new_tokens: int, hits: list[Block] | None = None) -> bool:
        hits = hits or []
        held = self._blocks.setdefault(req, [])
        bs = self.block_size
        total = req.num_computed_tokens + len(hits) * bs + num_new_tokens
        need = -(-total // bs) - len(held) - len(hits)
        evictable_hits = sum(1 for b in hits if b.ref_cnt == 0)
        if need > self.pool.num_free - evictable_hits:
            if not held:
                del self._blocks[req]
            return False
        if hits:
            self.pool.touch(hits)
            held.extend(hits)
        if need > 0:
            held.extend(self.pool.get_new_blocks(need))
        self._cache(req, held, total)
        return True

    def _cache(self, req: SimRequest, held: list[Block], num_tokens: int) -> None:
        if not self.pool.enable_caching:
            return
        full = min(num_tokens, req.num_tokens) // self.block_size
        done = self._num_cached.get(req, 0)
        if full <= done:
            return
        hashes = self._hashes(req)
        self.pool.cache_full_blocks(held, hashes, done, full, req.token_ids, self.root_hash)
        self._num_cached[req] = full

    def free(self, req: SimRequest) -> None:
        blocks = self._blocks.pop(req, None)
        self._num_cached.pop(req, None)
        if blocks:
            self.pool.free_blocks(reversed(blocks))

    def take_blocks(self, req: SimRequest) -> list[Block]:
        """Detach a finished request's blocks WITHOUT freeing them (P/D lease); free later with ``free_detached``."""
        self._num_cached.pop(req, None)
        return self._blocks.pop(req, [])

    def free_detached(self, blocks: list[Block]) -> None:
        self.pool.free_blocks(reversed(blocks))
