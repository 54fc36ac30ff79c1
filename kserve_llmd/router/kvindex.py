"""KV-block indexes: own block key → endpoints holding it (implementations of ``interfaces.KVIndex``).

``LRUKVIndex`` is the real one. Layout: ONE ``U64Table`` (``u64table.py``: keys in typed arrays, no Python object
per key) from block key to an endpoint BITMASK int, where each endpoint owns a bit slot (assigned on its first
``add``). A key held by one endpoint shares that endpoint's bit object, so a cached block costs 8 bytes of key,
8 of value pointer, 8 of LRU links and about 8 of hash slot: about 35 bytes of RSS (benchmarks/results/
router_index.md; a key held by several endpoints adds its own 32-byte mask int).

- ``add`` inserts or ORs the bit in, and moves the key to the most-recently-used end; over ``capacity`` keys the
  least-recently-used key is dropped (``evictions`` counts them).
- ``match(keys, endpoints)`` walks the prompt's keys once, ANDing masks, and records where each endpoint drops out::

      matched[e] = max { j : keys[0..j-1] all held by e }        (longest CONSECUTIVE prefix, in blocks)

  O(number of keys walked) with a few integer operations each; the walk stops when no endpoint is left. Keys that
  were hit by at least one endpoint are touched (moved to the MRU end).
- ``remove`` clears the bit (drops the key when no endpoint is left).
- ``clear(endpoint)`` is O(1) and LAZY: the endpoint's bit stops being owned at once (``match`` only ANDs owned
  bits, so its keys are invisible immediately) and a sweep then removes the bit from every mask, one step at a
  time: ``sweep_step`` entries scanned or ``sweep_step / 16`` keys rewritten or deleted, whichever comes first
  (under 1 ms), in the ``clear`` call itself, in each later ``add`` (the event path), or whenever ``sweep()`` is
  called (about 60 ms of CPU in all at a million keys, ~1 s if the cleared endpoint held them nearly all). The sweep
  stops as soon as no key holds the bit any more (``held`` counts keys per bit slot, kept on every add, remove
  and eviction), and only then is the slot reused. Until swept, keys held by nobody else still count in
  ``len()`` and in the capacity (they are never touched, so LRU drops them first). When no other endpoint holds
  any key (one engine, or the last one leaving), the table is simply replaced.

``medium`` is accepted and not weighted: a block on any tier counts as held (llm-d weighs CPU 0.8; not done here).
``SimpleKVIndex`` is an obviously-correct, unbounded reference (dict of sets) used as the oracle in the
conformance tests. ``MeteredKVIndex`` wraps any index and counts operations (metrics by wrapping, not by flags).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from kserve_llmd.router.interfaces import KVIndex
from kserve_llmd.router.u64table import U64Table
from kserve_llmd.types import BlockKey, EndpointId


class LRUKVIndex:
    """Bounded index: key → endpoint bitmask, LRU over keys. ``capacity`` is the maximum number of keys;
    ``sweep_step`` the entries one step of a lazy ``clear`` looks at."""

    def __init__(self, capacity: int = 1_000_000, *, sweep_step: int = 4096) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        if sweep_step <= 0:
            raise ValueError(f"sweep_step must be positive, got {sweep_step}")
        self.capacity = capacity
        self.sweep_step = sweep_step
        self.evictions = 0
        self._table = U64Table()  # key → endpoint bitmask (values: a list of ints), oldest = least recently used
        self._bits: dict[EndpointId, int] = {}  # owned bits
        self._held: list[int] = []  # per bit slot: keys whose mask has the bit (owned, or cleared and not swept)
        self._free: list[int] = []  # heap of reusable slots
        self._clearing = 0  # bits of cleared endpoints that some mask may still have
        self._sweep_at = 0  # next entry id the sweep looks at

    def __len__(self) -> int:
        return len(self._table)

    def endpoints(self) -> list[EndpointId]:
        """Endpoints that currently own a slot (added something since their last ``clear``)."""
        return list(self._bits)

    def blocks_of(self, endpoint: EndpointId) -> int:
        """Keys the endpoint holds in the index (0 once it was cleared)."""
        bit = self._bits.get(endpoint)
        return 0 if bit is None else self._held[bit.bit_length() - 1]

    @property
    def sweeping(self) -> bool:
        """True while a lazy ``clear`` still has bits to remove."""
        return bool(self._clearing)

    def _bit_for(self, endpoint: EndpointId) -> int:
        bit = self._bits.get(endpoint)
        if bit is None:
            if self._free:
                slot = heapq.heappop(self._free)
            else:
                slot = len(self._held)
                self._held.append(0)
            bit = self._bits[endpoint] = 1 << slot
        return bit

    def add(self, endpoint: EndpointId, keys: Sequence[BlockKey], medium: str | None = None) -> None:
        bit = self._bit_for(endpoint)
        table = self._table
        find, touch, insert, masks = table.find, table.touch, table.insert, table.values
        capacity = self.capacity
        new = 0
        for key in keys:
            e = find(key)
            if e:
                mask = masks[e]
                if not mask & bit:
                    masks[e] = mask | bit
                    new += 1
                touch(e)
            else:
                insert(key, bit)
                new += 1
                if len(table) > capacity:
                    self._evict_oldest()
        self._held[bit.bit_length() - 1] += new
        if self._clearing:
            self.sweep()

    def remove(self, endpoint: EndpointId, keys: Sequence[BlockKey]) -> None:
        bit = self._bits.get(endpoint)
        if bit is None:
            return
        table = self._table
        find, masks = table.find, table.values
        gone = 0
        for key in keys:
            e = find(key)
            mask = masks[e]  # 0 for an absent key (e == 0)
            if mask & bit:
                gone += 1
                if mask == bit:
                    table.delete(e)
                else:
                    masks[e] = mask ^ bit
        self._held[bit.bit_length() - 1] -= gone

    def clear(self, endpoint: EndpointId) -> None:
        bit = self._bits.pop(endpoint, None)
        if bit is None:
            return
        slot = bit.bit_length() - 1
        held = self._held
        if not any(held[:slot]) and not any(held[slot + 1:]):  # no other endpoint holds a key: start afresh
            owned = {b.bit_length() - 1 for b in self._bits.values()}
            self._table = U64Table()
            self._held = [0] * len(held)
            self._free = [s for s in range(len(held)) if s not in owned]  # ascending: a valid heap
            self._clearing = 0
            return
        if not held[slot]:
            heapq.heappush(self._free, slot)
            return
        self._clearing |= bit
        self._sweep_at = 1  # (re)start the pass: any entry may have the new bit
        self.sweep()

    def sweep(self, budget: int | None = None) -> bool:
        """One step of the lazy ``clear``: look at up to ``budget`` (default ``sweep_step``) more entries and take
        the cleared bits out of their masks. True when nothing is left to sweep."""
        clearing = self._clearing
        if not clearing:
            return True
        table = self._table
        masks = table.values
        budget = budget or self.sweep_step
        start = self._sweep_at
        end = min(len(masks), start + budget)
        hits = [e for e, mask in enumerate(masks[start:end], start) if mask & clearing]
        if len(hits) > budget // 16:  # rewriting or deleting a key costs ~16 scanned entries: bound the step
            hits = hits[:max(1, budget // 16)]
            end = hits[-1] + 1
        for e in hits:
            mask = masks[e]
            stale = mask & clearing
            self._drop(stale)
            if mask == stale:
                table.delete(e)
            else:
                masks[e] = mask ^ stale
        self._sweep_at = end
        self._release(pass_done=end >= len(masks))
        return not self._clearing

    def _release(self, *, pass_done: bool) -> None:
        """Free the slots of cleared bits no key has any more (all of them once a full pass is done)."""
        rest = self._clearing
        while rest:
            bit = rest & -rest
            rest ^= bit
            slot = bit.bit_length() - 1
            if pass_done or not self._held[slot]:
                self._held[slot] = 0
                self._clearing ^= bit
                heapq.heappush(self._free, slot)

    def _drop(self, mask: int) -> None:
        """A key with these bits is gone (or lost them): one key less for each of their slots."""
        held = self._held
        while mask:
            bit = mask & -mask
            mask ^= bit
            held[bit.bit_length() - 1] -= 1

    def _evict_oldest(self) -> None:
        table = self._table
        e = table.oldest()
        self._drop(table.values[e])
        table.delete(e)
        self.evictions += 1

    def match(self, keys: Sequence[BlockKey], endpoints: Sequence[EndpointId]) -> dict[EndpointId, int]:
        bits = self._bits
        wanted = [(e, bits.get(e, 0)) for e in endpoints]
        alive = 0
        for _, bit in wanted:
            alive |= bit
        drops: list[tuple[int, int]] = []  # (position, bits that dropped out there)
        if alive:
            table = self._table
            find, touch, masks = table.find, table.touch, table.values
            for position, key in enumerate(keys):
                e = find(key)
                held = masks[e] & alive  # masks[0] == 0: an absent key holds nothing
                if held != alive:
                    drops.append((position, alive ^ held))
                    alive = held
                    if not alive:
                        break
                touch(e)
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
