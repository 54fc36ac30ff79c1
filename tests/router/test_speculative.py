"""Speculative index entries: what a routing decision is about to cache, counted until a TTL runs out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kserve_llmd.router.hashing import block_keys, seed_for
from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.kv_apply import EndpointApplier, IngestStats
from kserve_llmd.router.kvindex import LRUKVIndex
from kserve_llmd.router.matcher import PreciseMatcher
from kserve_llmd.router.speculative import SpeculativeEntries, go_duration
from kserve_llmd.wire.kv_events import BlockStored

A, B = (Endpoint(id=n, url=f"http://{n}", models=frozenset({"m"})) for n in ("a", "b"))
SYSTEM = list(range(1000, 1024))  # 6 blocks of 4


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ctx(tokens: list[int]) -> RequestContext:
    return RequestContext(request_id="r", model="m", path="/v1/completions", body={}, token_ids=tokens)


@pytest.mark.parametrize(("text", "seconds"), [("2s", 2.0), ("500ms", 0.5), ("1m30s", 90.0), ("1.5h", 5400.0),
                                               ("250us", 250e-6), ("10µs", 10e-6), ("3ns", 3e-9), (".5s", 0.5)])
def test_go_durations_read_as_seconds(text: str, seconds: float) -> None:
    assert go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "2", "s", "2 s", "2sec", "-1s", "1d", "2s!"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        go_duration(text)


def test_entries_extend_a_shorter_confirmed_run_until_they_expire() -> None:
    clock = FakeClock()
    spec = SpeculativeEntries(2.0, clock)
    spec.add("a", [1, 2, 3])
    matched = {"a": 0, "b": 0}
    spec.extend([1, 2, 9, 4], matched)
    assert matched == {"a": 2, "b": 0}  # consecutive: the run stops at the first key not recorded
    longer = {"a": 3}
    spec.extend([1, 2, 3, 4], longer)
    assert longer == {"a": 3}  # a confirmed run as long is left alone
    confirmed = {"a": 4}
    spec.extend([1, 2, 3, 4], confirmed)
    assert confirmed == {"a": 4}  # and a longer one too
    not_candidate = {"b": 0}
    spec.extend([1, 2, 3], not_candidate)
    assert not_candidate == {"b": 0}  # an endpoint that is not a candidate gets no entry
    clock.now += 2.0
    expired = {"a": 0}
    spec.extend([1, 2, 3], expired)
    assert expired == {"a": 0}
    assert len(spec) == 0


def test_a_key_recorded_again_lives_to_the_later_deadline() -> None:
    clock = FakeClock()
    spec = SpeculativeEntries(2.0, clock)
    spec.add("a", [1, 2, 3])
    clock.now += 1.5
    spec.add("a", [1, 2, 7])  # another request with the same first two blocks
    clock.now += 1.0  # the first request's entries expire; 1 and 2 were recorded again
    matched = {"a": 0}
    spec.extend([1, 2, 3], matched)
    assert matched == {"a": 2}
    assert len(spec) == 3  # 1, 2, 7
    clock.now += 1.0
    spec.extend([1, 2, 7], matched := {"a": 0})
    assert matched == {"a": 0}
    assert len(spec) == 0


def test_the_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        SpeculativeEntries(0.0, FakeClock())


def test_the_matcher_counts_a_routed_prompt_as_cached_before_its_events_arrive() -> None:
    clock = FakeClock()
    index = LRUKVIndex(1000)
    matcher = PreciseMatcher(index, block_size=4, speculative=SpeculativeEntries(2.0, clock))
    first = ctx([*SYSTEM, 1, 2, 3, 4])
    assert matcher.match(first, [A, B]).matched_blocks == {"a": 0, "b": 0}
    matcher.observe_routed(first, A)
    second = ctx([*SYSTEM, 5, 6, 7, 8])  # same system prompt, another question: 6 of 7 blocks on a
    assert matcher.match(second, [A, B]).matched_blocks == {"a": 6, "b": 0}
    assert len(index) == 0  # nothing entered the event-fed index

    # a's own events arrive; once the speculation expires, the confirmed blocks are still there
    n = len(first.token_ids or []) // 4
    EndpointApplier("a", "m", index, IngestStats()).apply([BlockStored(list(range(n)), None, first.token_ids or [],
                                                                       4)])
    clock.now += 2.0
    assert matcher.match(ctx([*SYSTEM, 5, 6, 7, 8]), [A, B]).matched_blocks == {"a": 6, "b": 0}
    assert matcher.speculative is not None
    assert len(matcher.speculative) == 0


def test_without_speculation_routing_records_nothing() -> None:
    matcher = PreciseMatcher(LRUKVIndex(1000), block_size=4)
    first = ctx([*SYSTEM, 1, 2, 3, 4])
    matcher.match(first, [A, B])
    matcher.observe_routed(first, A)
    assert matcher.match(ctx([*SYSTEM, 5, 6, 7, 8]), [A, B]).matched_blocks == {"a": 0, "b": 0}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ab"), st.lists(st.integers(0, 2), min_size=1, max_size=8),
                          st.floats(0.0, 1.5)), min_size=1, max_size=12),
       st.lists(st.integers(0, 2), min_size=1, max_size=8))
def test_extend_equals_the_naive_walk_on_chained_keys(routed: list[tuple[str, list[int], float]],
                                                      query: list[int]) -> None:
    """Requests (endpoint, prompt, then the clock advances) on prompts over a tiny alphabet, so they share prefixes;
    the binary search must find what walking the keys one by one finds."""
    clock = FakeClock()
    spec = SpeculativeEntries(2.0, clock)
    seed = seed_for("m")
    recorded: list[tuple[float, str, list[int]]] = []
    for endpoint, tokens, advance in routed:
        keys = block_keys(tokens, 1, seed)
        spec.add(endpoint, keys)
        recorded.append((clock.now + 2.0, endpoint, keys))
        clock.now += advance
    query_keys = block_keys(query, 1, seed)
    live = {e: {k for deadline, who, keys in recorded if who == e and deadline > clock.now for k in keys}
            for e in "ab"}
    expected = {}
    for e in "ab":
        run = 0
        while run < len(query_keys) and query_keys[run] in live[e]:
            run += 1
        expected[e] = run
    matched = {"a": 0, "b": 0}
    spec.extend(query_keys, matched)
    assert matched == expected
