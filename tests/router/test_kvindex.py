"""ONE conformance suite for every KVIndex implementation, plus an oracle comparison on random operation sequences.

Implementations under test: ``LRUKVIndex`` (real, with room enough never to evict), ``SimpleKVIndex`` (the reference)
and ``MeteredKVIndex`` wrapping the real one. LRU-specific behaviour (eviction order, touches, lazy clear) is tested
after, then the ``U64Table`` underneath against a dict + OrderedDict model.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kserve_llmd.router.interfaces import KVIndex
from kserve_llmd.router.kvindex import IndexStats, LRUKVIndex, MeteredKVIndex, SimpleKVIndex
from kserve_llmd.router.u64table import SHARD_BITS, U64Table

FACTORIES: dict[str, Callable[[], KVIndex]] = {
    "lru": lambda: LRUKVIndex(capacity=10_000),
    "simple": SimpleKVIndex,
    "metered-lru": lambda: MeteredKVIndex(LRUKVIndex(capacity=10_000)),
}


@pytest.fixture(params=sorted(FACTORIES))
def index(request: pytest.FixtureRequest) -> KVIndex:
    return FACTORIES[request.param]()


# ------------------------------------------------------------------------------------------- conformance


def test_longest_consecutive_prefix_per_endpoint(index: KVIndex) -> None:
    index.add("a", [1, 2, 3, 4])
    index.add("b", [1, 2])
    index.add("c", [2, 3, 4])  # holds later blocks but not the first: no prefix
    index.add("d", [1, 3, 4])  # a hole at block 1: prefix of 1
    assert index.match([1, 2, 3, 4, 5], ["a", "b", "c", "d", "unknown"]) == {
        "a": 4, "b": 2, "c": 0, "d": 1, "unknown": 0,
    }


def test_full_match_and_empty_prompt(index: KVIndex) -> None:
    index.add("a", [7, 8])
    assert index.match([7, 8], ["a"]) == {"a": 2}
    assert index.match([], ["a"]) == {"a": 0}
    assert index.match([7], []) == {}


def test_remove_breaks_the_prefix_at_the_removed_block(index: KVIndex) -> None:
    index.add("a", [1, 2, 3])
    index.add("b", [1, 2, 3])
    index.remove("a", [2])
    assert index.match([1, 2, 3], ["a", "b"]) == {"a": 1, "b": 3}
    index.remove("b", [1, 2, 3])
    assert index.match([1, 2, 3], ["a", "b"]) == {"a": 1, "b": 0}
    index.remove("nobody", [1])  # unknown endpoint or key: no effect, no error
    index.remove("a", [99])
    assert index.match([1], ["a"]) == {"a": 1}


def test_clear_drops_only_that_endpoint_and_len_counts_keys(index: KVIndex) -> None:
    index.add("a", [1, 2, 3])
    index.add("b", [3, 4])
    assert len(index) == 4
    index.clear("a")
    assert len(index) == 2
    assert index.match([1, 2, 3], ["a", "b"]) == {"a": 0, "b": 0}
    assert index.match([3, 4], ["a", "b"]) == {"a": 0, "b": 2}
    index.add("a", [3])  # a cleared endpoint can come back
    assert index.match([3, 4], ["a", "b"]) == {"a": 1, "b": 2}


def test_adding_twice_is_idempotent(index: KVIndex) -> None:
    index.add("a", [1, 2], "GPU")
    index.add("a", [1, 2], "CPU")
    assert len(index) == 2
    index.remove("a", [1])
    assert index.match([1, 2], ["a"]) == {"a": 0}


# ------------------------------------------------------------------------------------------- oracle

ENDPOINTS = ["e0", "e1", "e2", "e3"]
keys_st = st.lists(st.integers(min_value=0, max_value=12), max_size=8)
op_st: st.SearchStrategy[tuple[str, str, list[int]]] = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(ENDPOINTS), keys_st),
    st.tuples(st.just("remove"), st.sampled_from(ENDPOINTS), keys_st),
    st.tuples(st.just("clear"), st.sampled_from(ENDPOINTS), st.just([])),
    st.tuples(st.just("match"), st.just(""), keys_st),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(op_st, max_size=40), st.sampled_from([1, 3, 4096]))
def test_real_index_agrees_with_reference_on_random_operations(
    ops: list[tuple[str, str, list[int]]], sweep_step: int,
) -> None:
    """``sweep_step`` 1 or 3 leaves lazy clears half done between operations: matches must not see it, and
    ``len`` only counts swept-out keys late (it agrees once the sweep is drained)."""
    real, oracle = LRUKVIndex(capacity=1000, sweep_step=sweep_step), SimpleKVIndex()
    for op, endpoint, keys in ops:
        if op == "match":
            assert real.match(keys, ENDPOINTS) == oracle.match(keys, ENDPOINTS)
        else:
            for idx in (real, oracle):
                if op == "add":
                    idx.add(endpoint, keys)
                elif op == "remove":
                    idx.remove(endpoint, keys)
                else:
                    idx.clear(endpoint)
        assert len(real) >= len(oracle)
        assert all(real.blocks_of(e) == sum(e in h for h in oracle._holders.values()) for e in ENDPOINTS)
        if not real.sweeping:
            assert len(real) == len(oracle)
    while not real.sweep():
        pass
    assert len(real) == len(oracle)
    assert real.match(list(range(13)), ENDPOINTS) == oracle.match(list(range(13)), ENDPOINTS)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ENDPOINTS), keys_st), max_size=30))
def test_bounded_index_never_exceeds_capacity_and_never_invents_blocks(adds: list[tuple[str, list[int]]]) -> None:
    real, oracle = LRUKVIndex(capacity=5), SimpleKVIndex()
    for endpoint, keys in adds:
        real.add(endpoint, keys)
        oracle.add(endpoint, keys)
        assert len(real) <= 5
    probe = list(range(13))
    got, truth = real.match(probe, ENDPOINTS), oracle.match(probe, ENDPOINTS)
    assert all(got[e] <= truth[e] for e in ENDPOINTS)


# ------------------------------------------------------------------------------------------- LRU specifics


def test_lru_evicts_least_recently_used_key_and_counts_it() -> None:
    index = LRUKVIndex(capacity=3)
    index.add("a", [1, 2, 3])
    index.add("b", [1])  # touches key 1: now 2 is the oldest
    index.add("a", [4])
    assert index.evictions == 1
    assert index.match([1], ["a", "b"]) == {"a": 1, "b": 1}
    assert index.match([2], ["a"]) == {"a": 0}


def test_match_hits_are_touched_and_misses_are_not() -> None:
    index = LRUKVIndex(capacity=3)
    index.add("a", [1, 2, 3])
    assert index.match([1, 9], ["a"]) == {"a": 1}  # touches 1 only
    index.add("a", [4, 5])  # evicts 2 then 3
    assert index.match([1], ["a"]) == {"a": 1}
    assert index.match([3], ["a"]) == {"a": 0}


def test_cleared_slots_are_reused_without_leaking_old_bits() -> None:
    index = LRUKVIndex(capacity=100)
    index.add("a", [1])
    index.add("b", [2])
    index.clear("a")
    index.add("c", [3])  # reuses a's bit slot
    assert index.match([1], ["c"]) == {"c": 0}
    assert index.match([3], ["c", "a"]) == {"c": 1, "a": 0}
    assert sorted(index.endpoints()) == ["b", "c"]


def test_many_endpoints_beyond_64_bits() -> None:
    index = LRUKVIndex(capacity=1000)
    for i in range(130):
        index.add(f"e{i}", list(range(i % 7 + 1)))
    got = index.match(list(range(10)), [f"e{i}" for i in range(130)])
    assert got == {f"e{i}": i % 7 + 1 for i in range(130)}


def test_metered_index_counts_operations() -> None:
    stats = IndexStats()
    index = MeteredKVIndex(LRUKVIndex(capacity=100), stats)
    index.add("a", [1, 2, 3])
    index.remove("a", [3])
    index.match([1, 2, 3], ["a"])
    index.clear("a")
    assert stats == IndexStats(blocks_added=3, blocks_removed=1, clears=1, matches=1, blocks_matched=2)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        LRUKVIndex(capacity=0)
    with pytest.raises(ValueError, match="sweep_step"):
        LRUKVIndex(sweep_step=0)


class ModelLRU:
    """The LRU semantics spelled out with an OrderedDict (what the index did before the compact table)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.holders: OrderedDict[int, set[str]] = OrderedDict()

    def add(self, endpoint: str, keys: list[int]) -> None:
        for key in keys:
            self.holders.setdefault(key, set()).add(endpoint)
            self.holders.move_to_end(key)
            if len(self.holders) > self.capacity:
                self.holders.popitem(last=False)

    def match(self, keys: list[int], endpoints: list[str]) -> dict[str, int]:
        out = {e: 0 for e in endpoints}
        alive = set(endpoints)
        for position, key in enumerate(keys):
            alive &= self.holders.get(key, set())
            if not alive:
                break
            self.holders.move_to_end(key)
            for e in alive:
                out[e] = position + 1
        return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(ENDPOINTS), keys_st), max_size=40))
def test_eviction_order_is_exactly_lru_over_adds_and_match_hits(ops: list[tuple[bool, str, list[int]]]) -> None:
    real, model = LRUKVIndex(capacity=6), ModelLRU(capacity=6)
    for is_add, endpoint, keys in ops:
        if is_add:
            real.add(endpoint, keys)
            model.add(endpoint, keys)
        else:
            assert real.match(keys, ENDPOINTS) == model.match(keys, ENDPOINTS)
        assert len(real) == len(model.holders)
        assert real.evictions >= 0
    probe = list(range(13))
    assert {k for k in probe if real.match([k], ENDPOINTS) != dict.fromkeys(ENDPOINTS, 0)} == set(model.holders)


def test_clearing_a_big_endpoint_is_lazy_bounded_and_keeps_the_others() -> None:
    index = LRUKVIndex(capacity=100_000, sweep_step=500)
    for i in range(3000):
        chain = [i * 10 + j for j in range(10)]
        index.add("big", chain)
        if i % 3 == 0:
            index.add("other", chain[:5])
    assert (len(index), index.blocks_of("big"), index.blocks_of("other")) == (30_000, 30_000, 5000)
    index.clear("big")  # one step of 500 entries, not a scan of 30,000
    assert index.sweeping
    assert index.match([0, 1, 2, 3, 4, 5], ["big", "other"]) == {"big": 0, "other": 5}  # invisible at once
    index.add("new", [999_999])  # a new endpoint cannot get big's slot while its bit is still in masks
    assert index.match([0], ["new"]) == {"new": 0}
    steps = 2  # the clear's own step, the add's, then those below (the last one returns True)
    while not index.sweep():
        steps += 1
    assert steps == pytest.approx(30_000 / (500 // 16), abs=2)  # each step rewrites 31 of big's 30,000 keys
    assert len(index) == 5001
    assert (index.blocks_of("other"), index.blocks_of("big")) == (5000, 0)
    assert sorted(index.endpoints()) == ["new", "other"]
    index.add("late", [0])  # reuses big's slot now that it is swept out
    assert index.match([0, 1], ["late", "other", "big"]) == {"late": 1, "other": 2, "big": 0}


def test_a_sweep_stops_once_the_cleared_endpoint_holds_nothing() -> None:
    index = LRUKVIndex(capacity=100_000, sweep_step=100)
    index.add("a", list(range(10_000)))
    index.add("small", [5, 6])
    index.clear("small")  # its two keys are in the first step: done without scanning the rest
    assert not index.sweeping
    assert index.match([5, 6], ["a", "small"]) == {"a": 2, "small": 0}
    index.remove("small", [5])  # a cleared endpoint: nothing to do
    index.add("b", [1])
    index.remove("b", [1])
    index.clear("b")  # holds nothing: the slot is freed without a sweep
    assert (index.sweeping, len(index)) == (False, 10_000)


def test_eviction_during_a_sweep_counts_for_it() -> None:
    index = LRUKVIndex(capacity=50, sweep_step=1)
    index.add("a", list(range(50)))
    index.clear("a")
    index.add("b", list(range(100, 150)))  # evicts a's 50 dead keys (LRU) while the sweep is under way
    assert not index.sweeping
    assert (len(index), index.blocks_of("b")) == (50, 50)


# ------------------------------------------------------------------------------------------- U64Table

table_op_st = st.tuples(
    st.sampled_from(["insert", "delete", "touch", "find"]),
    # few shards and few home slots: long probe runs, wrap-around and backward shifts are the common case
    st.builds(lambda shard, home, salt: shard | (home << SHARD_BITS) | (salt << 40),
              st.integers(0, 3), st.integers(0, 15), st.integers(0, 2)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(table_op_st, max_size=120))
def test_u64_table_agrees_with_a_dict_and_keeps_use_order(ops: list[tuple[str, int]]) -> None:
    table, model = U64Table(), OrderedDict[int, int]()
    for n, (op, key) in enumerate(ops):
        e = table.find(key)
        assert (e != 0) == (key in model)
        if op == "insert" and not e:
            table.insert(key, n + 1)
            model[key] = n + 1
        elif op == "delete" and e:
            table.delete(e)
            del model[key]
        elif op == "touch" and e:
            table.touch(e)
            model.move_to_end(key)
        assert len(table) == len(model)
    assert {table.keys[e]: table.values[e] for e in table.ids()} == dict(model)
    order, e = [], table.oldest()
    while e:
        order.append(table.keys[e])
        e = table.next[e]
    assert order == list(model)
    assert all(table.values[table.find(k)] == v for k, v in model.items())


def test_u64_table_grows_a_shard_and_reuses_entry_ids() -> None:
    table = U64Table()
    keys = [7 | (i << SHARD_BITS) for i in range(1000)]  # all in shard 7: it doubles several times
    for key in keys:
        table.insert(key, key)
    assert all(table.values[table.find(key)] == key for key in keys)
    for key in keys[:500]:
        table.delete(table.find(key))
    size = len(table.keys)
    for key in keys[:500]:
        table.insert(key + 1, 1)  # other shards, same entry ids
    assert (len(table.keys), len(table)) == (size, 1000)
    assert table.find(keys[0]) == 0
    assert table.find(keys[999]) != 0


def test_clearing_the_only_endpoint_with_keys_starts_afresh_and_keeps_the_owned_slots() -> None:
    index = LRUKVIndex(capacity=1000, sweep_step=1)
    index.add("idle", [1])
    index.remove("idle", [1])  # owns a slot, holds nothing
    index.add("a", list(range(100)))
    index.clear("a")  # no sweep needed: nobody else holds a key
    assert (len(index), index.sweeping) == (0, False)
    index.add("b", [5])
    index.add("idle", [5, 6])
    assert index.match([5, 6], ["a", "b", "idle"]) == {"a": 0, "b": 1, "idle": 2}
    assert sorted(index.endpoints()) == ["b", "idle"]


def test_a_sweep_step_rewrites_at_most_a_sixteenth_of_its_budget() -> None:
    index = LRUKVIndex(capacity=10_000, sweep_step=160)
    index.add("other", [0])
    index.add("big", list(range(1, 1001)))
    index.clear("big")  # one step: 10 keys deleted, not 160
    assert len(index) == 1001 - 10
    steps = 2  # the clear's own step and the last call, which returns True
    while not index.sweep():
        steps += 1
    assert (steps, len(index)) == (100, 1)
