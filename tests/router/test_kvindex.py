"""ONE conformance suite for every KVIndex implementation, plus an oracle comparison on random operation sequences.

Implementations under test: ``LRUKVIndex`` (real, with room enough never to evict), ``SimpleKVIndex`` (the reference)
and ``MeteredKVIndex`` wrapping the real one. LRU-specific behaviour (eviction order, touches) is tested after.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kserve_llmd.router.interfaces import KVIndex
from kserve_llmd.router.kvindex import IndexStats, LRUKVIndex, MeteredKVIndex, SimpleKVIndex

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
@given(st.lists(op_st, max_size=40))
def test_real_index_agrees_with_reference_on_random_operations(ops: list[tuple[str, str, list[int]]]) -> None:
    real, oracle = LRUKVIndex(capacity=1000), SimpleKVIndex()
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
