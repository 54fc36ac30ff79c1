"""KV-block indexes: own block key → endpoints holding it (implementations of ``interfaces.KVIndex``).

``LRUKVIndex`` is the real one. Layout: ONE ``OrderedDict`` from block key to an endpoint BITMASK int, where each
endpoint owns a bit slot (assigned on its first ``add``, freed by ``clear``). A key held by one endpoint shares that
endpoint's bit object, so a cached block costs one dict entry, one linked-list node and one 60-bit key int
(about 170 bytes measured: see benchmarks/results/router_index.md).

- ``add`` inserts or ORs the bit in, and moves the key to the most-recently-used end; over ``capacity`` keys the
  least-recently-used key is dropped (``evictions`` counts them).
- ``match(keys, endpoints)`` walks the prompt's keys once, ANDing masks, and records where each endpoint drops out::

      matched[e] = max { j : keys[0..j-1] all held by e }        (longest CONSECUTIVE prefix, in blocks)

  O(number of keys walked) with a few integer operations each; the walk stops when no endpoint is left. Keys that
  were hit by at least one endpoint are touched (moved to the MRU end).
- ``remove`` clears the bit (drops the key when no endpoint is left); ``clear(endpoint)`` scans every key once
  (O(size), rare: engine restart, lost events, endpoint removal) and frees the slot.

``medium`` is accepted and not weighted: a block on any tier counts as held (llm-d weighs CPU 0.8; not done here).
``SimpleKVIndex`` is an obviously-correct, unbounded reference (dict of sets) used as the oracle in the
conformance tests. ``MeteredKVIndex`` wraps any index and counts operations (metrics by wrapping, not by flags).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from kserve_llmd.router.interfaces import KVIndex
from kserve_llmd.types import BlockKey, EndpointId


class LRUKVIndex:
    """Bounded index: key → endpoint bitmask, LRU over keys. ``capacity`` is the maximum number of keys."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.evictions = 0
        self._masks: OrderedDict[BlockKey, int] = OrderedDict()
        self._bits: dict[EndpointId, int] = {}
        self._free: list[int] = []
        self._next_slot = 0

    def __len__(self) -> int:
        return len(self._masks)

    def endpoints(self) -> list[EndpointId]:
        """Endpoints that currently own a slot (added something since their last ``clear``)."""
        return list(self._bits)

    def _bit_for(self, endpoint: EndpointId) -> int:
        bit = self._bits.get(endpoint)
        if bit is None:
            if self._free:
                slot = heapq.heappop(self._free)
            else:
                slot = self._next_slot
                self._next_slot += 1
            bit = self._bits[endpoint] = 1 << slot
        return bit

    def add(self, endpoint: EndpointId, keys: Sequence[BlockKey], medium: str | None = None) -> None:
        bit = self._bit_for(endpoint)
        masks = self._masks
        get = masks.get
        touch = masks.move_to_end
        capacity = self.capacity
        for key in keys:
            mask = get(key)
            if mask is None:
                if len(masks) >= capacity:
                    masks.popitem(last=False)
                    self.evictions += 1
                masks[key] = bit
            else:
                if not mask & bit:
                    masks[key] = mask | bit
                touch(key)

    def remove(self, endpoint: EndpointId, keys: Sequence[BlockKey]) -> None:
        bit = self._bits.get(endpoint)
        if bit is None:
            return
        masks = self._masks
        get = masks.get
        for key in keys:
            mask = get(key)
            if mask is not None and mask & bit:
                mask ^= bit
                if mask:
                    masks[key] = mask
                else:
                    del masks[key]

    def clear(self, endpoint: EndpointId) -> None:
        bit = self._bits.pop(endpoint, None)
        if bit is None:
            return
        masks = self._masks
        emptied = []
        for key, mask in masks.items():
            if mask & bit:
                if mask == bit:
                    emptied.append(key)
                else:
                    masks[key] = mask ^ bit  # value assignment keeps the order and is safe while iterating
        for key in emptied:
            del masks[key]
        heapq.heappush(self._free, bit.bit_length() - 1)

    def match(self, keys: Sequence[BlockKey], endpoints: Sequence[EndpointId]) -> dict[EndpointId, int]:
        bits = self._bits
        wanted = [(e, bits.get(e, 0)) for e in endpoints]
        alive = 0
        for _, bit in wanted:
            alive |= bit
        drops: list[tuple[int, int]] = []  # (position, bits that dropped out there)
        if alive:
            get = self._masks.get
            touch = self._masks.move_to_end
            for position, key in enumerate(keys):
                held = get(key, 0) & alive
                if held != alive:
                    drops.append((position, alive ^ held))
                    alive = held
                    if not alive:
                        break
                touch(key)
        total = len(keys)
        out: dict[EndpointId, int] = {}
        for endpoint, bit in wanted:
            if not bit:
                out[endpoint] = 0
            elif bit & alive:
                out[endpoint] = total
            else:
                out[endpoint] = next(pos for pos, dropped in drops if dropped & bit)
        return out


class SimpleKVIndex:
    """Unbounded reference implementation (dict of sets, naive match). The conformance suite's oracle."""

    def __init__(self) -> None:
        self._holders: dict[BlockKey, set[EndpointId]] = {}

    def __len__(self) -> int:
        return len(self._holders)

    def add(self, endpoint: EndpointId, keys: Sequence[BlockKey], medium: str | None = None) -> None:
        for key in keys:
            self._holders.setdefault(key, set()).add(endpoint)

    def remove(self, endpoint: EndpointId, keys: Sequence[BlockKey]) -> None:
        for key in keys:
            holders = self._holders.get(key)
            if holders is not None:
                holders.discard(endpoint)
                if not holders:
                    del self._holders[key]

    def clear(self, endpoint: EndpointId) -> None:
        for key in list(self._holders):
            self.remove(endpoint, [key])

    def match(self, keys: Sequence[BlockKey], endpoints: Sequence[EndpointId]) -> dict[EndpointId, int]:
        out = {}
        for endpoint in endpoints:
            n = 0
            while n < len(keys) and endpoint in self._holders.get(keys[n], ()):
                n += 1
            out[endpoint] = n
        return out


@dataclass(slots=True)
class IndexStats:
    """Counters of index operations (exported to Prometheus by the router)."""

    blocks_added: int = 0
    blocks_removed: int = 0
    clears: int = 0
    matches: int = 0
    blocks_matched: int = 0  # sum over matches of the best endpoint's matched blocks


class MeteredKVIndex:
    """Wraps any ``KVIndex`` and counts what goes through it into ``stats``; behaviour is the inner index's."""

    def __init__(self, inner: KVIndex, stats: IndexStats | None = None) -> None:
        self.inner = inner
        self.stats = stats if stats is not None else IndexStats()

    def __len__(self) -> int:
        return len(self.inner)

    def add(self, endpoint: EndpointId, keys: Sequence[BlockKey], medium: str | None = None) -> None:
        self.stats.blocks_added += len(keys)
        self.inner.add(endpoint, keys, medium)

    def remove(self, endpoint: EndpointId, keys: Sequence[BlockKey]) -> None:
        self.stats.blocks_removed += len(keys)
        self.inner.remove(endpoint, keys)

    def clear(self, endpoint: EndpointId) -> None:
        self.stats.clears += 1
        self.inner.clear(endpoint)

    def match(self, keys: Sequence[BlockKey], endpoints: Sequence[EndpointId]) -> dict[EndpointId, int]:
        result = self.inner.match(keys, endpoints)
        self.stats.matches += 1
        self.stats.blocks_matched += max(result.values(), default=0)
        return result
