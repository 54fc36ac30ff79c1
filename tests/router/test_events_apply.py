"""Applying decoded KV events to the index (router/kv_apply.py), without sockets."""

from __future__ import annotations

from kserve_llmd.router.hashing import block_keys, seed_for
from kserve_llmd.router.kv_apply import EndpointApplier, IngestStats
from kserve_llmd.router.kvindex import LRUKVIndex
from kserve_llmd.wire.kv_events import AllBlocksCleared, BlockRemoved, BlockStored

BS = 4
TOKENS = list(range(100, 124))  # 6 blocks


def stored(
    hashes: list[int], parent: int | None, tokens: list[int], lora_name: str | None = None,
    extra_keys: list[object] | None = None,
) -> BlockStored:
    return BlockStored(block_hashes=hashes, parent_block_hash=parent, token_ids=tokens, block_size=BS,
                       lora_name=lora_name, extra_keys=extra_keys)


def make(endpoint: str = "e1") -> tuple[EndpointApplier, LRUKVIndex, IngestStats]:
    index, stats = LRUKVIndex(1000), IngestStats()
    return EndpointApplier(endpoint, "m", index, stats), index, stats


def request_keys(tokens: list[int], lora: str | None = None, salt: str | None = None) -> list[int]:
    return block_keys(tokens, BS, seed_for("m", lora, salt))


def test_stored_in_two_chained_events_matches_the_request_keys() -> None:
    applier, index, stats = make()
    applier.apply([stored([11, 12], None, TOKENS[:8])])
    applier.apply([stored([13, 14, 15], 12, TOKENS[8:20])])  # chained from the engine hash of block 2
    assert index.match(request_keys(TOKENS), ["e1"]) == {"e1": 5}
    assert stats.blocks_stored == 5
    assert stats.events == 2


def test_unknown_parent_is_skipped_and_counted() -> None:
    applier, index, stats = make()
    applier.apply([stored([21, 22], 999, TOKENS[4:12])])
    assert len(index) == 0
    assert stats.unchained_blocks == 2


def test_removed_uses_the_engine_hash_map_and_clear_resets() -> None:
    applier, index, stats = make()
    applier.apply([stored([11, 12, 13], None, TOKENS[:12])])
    applier.apply([BlockRemoved([12, 777])])
    assert index.match(request_keys(TOKENS), ["e1"]) == {"e1": 1}
    assert (stats.blocks_removed, stats.unknown_removals) == (1, 1)
    applier.apply([AllBlocksCleared()])
    assert len(index) == 0
    assert len(applier) == 0
    assert stats.all_cleared == 1


def test_lora_and_cache_salt_seed_the_chain() -> None:
    applier, index, _ = make()
    applier.apply([stored([1, 2], None, TOKENS[:8], lora_name="ad", extra_keys=[("ad", "s1"), ("ad",)])])
    assert index.match(request_keys(TOKENS, "ad", "s1"), ["e1"]) == {"e1": 2}
    assert index.match(request_keys(TOKENS, "ad"), ["e1"]) == {"e1": 0}
    assert index.match(request_keys(TOKENS), ["e1"]) == {"e1": 0}
    applier.apply([stored([3], None, TOKENS[:4], lora_name="ad", extra_keys=[("ad",)])])  # no salt
    assert index.match(request_keys(TOKENS, "ad"), ["e1"]) == {"e1": 1}


def test_two_endpoints_sharing_a_prefix_and_one_evicting() -> None:
    index, stats = LRUKVIndex(1000), IngestStats()
    a = EndpointApplier("a", "m", index, stats)
    b = EndpointApplier("b", "m", index, stats)
    a.apply([stored([1, 2, 3], None, TOKENS[:12])])
    b.apply([stored([91, 92], None, TOKENS[:8])])  # different engine hashes, same own keys
    assert index.match(request_keys(TOKENS), ["a", "b"]) == {"a": 3, "b": 2}
    b.apply([BlockRemoved([91])])
    assert index.match(request_keys(TOKENS), ["a", "b"]) == {"a": 3, "b": 0}


def test_block_size_mismatch_is_counted_and_reported() -> None:
    index, stats = LRUKVIndex(1000), IngestStats()
    seen: dict[str, int] = {}
    applier = EndpointApplier("a", "m", index, stats, expected_block_size=lambda m: 16, on_block_size=seen.__setitem__)
    applier.apply([stored([1], None, TOKENS[:4])])
    assert stats.block_size_mismatches == 1
    assert seen == {"m": BS}


def test_hash_map_is_bounded() -> None:
    index, stats = LRUKVIndex(1000), IngestStats()
    applier = EndpointApplier("a", "m", index, stats, max_blocks=4)
    applier.apply([stored([1, 2, 3, 4, 5, 6], None, TOKENS)])
    assert len(applier) == 4
    applier.apply([BlockRemoved([1])])  # forgotten mapping: counted, not applied
    assert stats.unknown_removals == 1


def test_reset_removes_only_this_endpoints_blocks_even_after_the_map_was_trimmed() -> None:
    index, stats = LRUKVIndex(1000), IngestStats()
    a = EndpointApplier("a", "m", index, stats)
    b = EndpointApplier("b", "m", index, stats, max_blocks=2)
    a.apply([stored([1, 2, 3], None, TOKENS[:12])])
    b.apply([stored([7, 8, 9], None, TOKENS[:12])])  # b's map keeps 2 of 3: a reset must still drop all 3
    a.reset()
    assert index.match(request_keys(TOKENS), ["a", "b"]) == {"a": 0, "b": 3}
    b.reset()
    assert len(index) == 0
    b.apply([stored([7], None, TOKENS[:4])])
    b.forget()
    assert len(index) == 0


def test_a_hash_stored_twice_is_held_until_its_last_copy_is_removed() -> None:
    # Real vLLM (docs/real-vllm-findings.md 1.3): a repeated greedy request refills its decode block and stores the
    # SAME hash again (a second physical copy); eviction sends one BlockRemoved per copy, in one batch or apart.
    applier, index, stats = make()
    applier.apply([stored([11, 12], None, TOKENS[:8])])
    applier.apply([stored([13], 12, TOKENS[8:12])])  # decode block, first copy
    applier.apply([stored([13], 12, TOKENS[8:12])])  # the same block recomputed: second copy
    applier.apply([stored([13], 12, TOKENS[8:12])])  # and a third
    assert index.match(request_keys(TOKENS), ["e1"]) == {"e1": 3}
    assert (applier.copies(11), applier.copies(13), applier.copies(99)) == (1, 3, 0)
    assert applier.key_for(13) == request_keys(TOKENS)[2]
    applier.apply([BlockRemoved([13]), BlockRemoved([13])])  # two of three copies evicted
    assert applier.copies(13) == 1
    assert index.match(request_keys(TOKENS), ["e1"]) == {"e1": 3}  # the engine still holds block 3
    applier.apply([BlockRemoved([13])])  # the last copy
    assert index.match(request_keys(TOKENS), ["e1"]) == {"e1": 2}
    applier.apply([BlockRemoved([13])])  # one removal more than stores: unknown, counted, nothing else changes
    assert index.match(request_keys(TOKENS), ["e1"]) == {"e1": 2}
    assert (stats.blocks_stored, stats.blocks_removed, stats.unknown_removals) == (5, 3, 1)
    # the copies are per endpoint and per hash: storing again after the last removal starts at one copy
    applier.apply([stored([13], 12, TOKENS[8:12])])
    applier.apply([BlockRemoved([13])])
    assert index.match(request_keys(TOKENS), ["e1"]) == {"e1": 2}
    assert len(applier) == 2


def test_copies_in_one_event_and_a_reset_forget_them() -> None:
    applier, index, _ = make()
    applier.apply([stored([11, 12], None, TOKENS[:8]), stored([11], None, TOKENS[:4])])  # block 1 twice
    applier.apply([BlockRemoved([11])])
    assert index.match(request_keys(TOKENS), ["e1"]) == {"e1": 2}
    applier.reset()  # the engine restarted: no copy survives, and none is remembered
    assert len(index) == 0
    applier.apply([stored([11], None, TOKENS[:4])])
    applier.apply([BlockRemoved([11])])
    assert len(index) == 0
    # a reset drops this endpoint's blocks, copies included, and keeps the other endpoint's
    other = EndpointApplier("e2", "m", index, IngestStats())
    other.apply([stored([11, 12], None, TOKENS[:8])])
    applier.apply([stored([11], None, TOKENS[:4]), stored([11], None, TOKENS[:4])])
    applier.reset()
    assert index.match(request_keys(TOKENS), ["e1", "e2"]) == {"e1": 0, "e2": 2}


def test_forget_is_lazy_and_leaves_no_entry_of_the_endpoint_and_all_of_the_others() -> None:
    index, stats = LRUKVIndex(10_000, sweep_step=64), IngestStats()
    gone, kept = EndpointApplier("gone", "m", index, stats), EndpointApplier("kept", "m", index, stats)
    for p in range(50):  # 50 prompts of 6 blocks each; "kept" holds the first 3 blocks of every 5th one
        tokens = [p * 1000 + t for t in range(24)]
        gone.apply([stored([p * 10 + b for b in range(6)], None, tokens)])
        if p % 5 == 0:
            kept.apply([stored([p * 10 + b for b in range(3)], None, tokens[:12])])
    assert (len(index), index.blocks_of("gone"), index.blocks_of("kept")) == (300, 300, 30)
    gone.forget()
    assert index.sweeping  # 64 entries per step: not done in the call
    probe = request_keys(list(range(24)))
    assert index.match(probe, ["gone", "kept"]) == {"gone": 0, "kept": 3}
    assert len(gone) == 0
    while not index.sweep():
        pass
    assert (len(index), index.blocks_of("kept"), sorted(index.endpoints())) == (30, 30, ["kept"])
