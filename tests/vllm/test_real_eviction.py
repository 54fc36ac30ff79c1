"""BlockRemoved on a REAL vLLM engine: a cache of 24 blocks (--num-gpu-blocks-override) filled by distinct prompts.

Run by hand: bash scripts/real-vllm-setup && .venv/bin/pytest -m vllm tests/vllm
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from kserve_llmd.realvllm import BLOCK_SIZE, MODEL_NAME, RealVllm, available
from kserve_llmd.realvllm.probe import eventually, metric_families, post_json, replay_batches
from kserve_llmd.router.kv_apply import EndpointApplier, IngestStats
from kserve_llmd.router.kvindex import LRUKVIndex
from kserve_llmd.wire.kv_events import BlockRemoved, BlockStored, KVEvent, decode_batch

_REASON = available()
pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(300),
]

NUM_BLOCKS = 24
WORDS = [
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "router", "engine", "caches", "answers",
    "prefills", "decodes", "streams", "hello", "world", "kubernetes", "model", "story", "dragons", "capital",
    "France",
]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def engine() -> AsyncIterator[RealVllm]:
    async with RealVllm(extra_args=["--num-gpu-blocks-override", str(NUM_BLOCKS)]) as e:
        yield e


async def complete(engine: RealVllm, prompt: str, **extra: Any) -> dict[str, Any]:
    body = {"model": MODEL_NAME, "prompt": prompt, "temperature": 0, **extra}
    status, out = await post_json(engine.url + "/v1/completions", body)
    assert status == 200, out
    assert isinstance(out, dict)
    return out


async def all_events(engine: RealVllm) -> list[KVEvent]:
    return [ev for frames in await replay_batches(engine.replay, 0) for ev in decode_batch(frames[2]).events]


async def test_cache_config_reports_the_override(engine: RealVllm) -> None:
    fams = await metric_families(engine.url)
    (info,) = fams["vllm:cache_config_info"].samples
    assert info.labels["num_gpu_blocks_override"] == str(NUM_BLOCKS)
    assert info.labels["block_size"] == str(BLOCK_SIZE)


async def test_eviction_removes_each_stored_copy(engine: RealVllm) -> None:
    # The same greedy request twice: its decode block is recomputed and stored AGAIN under the same hash.
    p0 = "Hello world, the router caches blocks. " * 8
    for _ in range(2):
        await complete(engine, p0, max_tokens=40, ignore_eos=True)
    # Then more distinct prompts than the cache holds.
    rng = random.Random(7)
    for _ in range(12):
        await complete(engine, " ".join(rng.choice(WORDS) for _ in range(70)), max_tokens=8, ignore_eos=True)

    events: list[KVEvent] = []

    async def evicted() -> bool:
        events[:] = await all_events(engine)
        return any(isinstance(e, BlockRemoved) for e in events)

    assert await eventually(evicted)
    stored: Counter[int] = Counter()
    removed: Counter[int] = Counter()
    for ev in events:
        if isinstance(ev, BlockStored):
            stored.update(ev.block_hashes)
        elif isinstance(ev, BlockRemoved):
            assert ev.medium == "GPU"
            assert len(ev.block_hashes) == 1  # one event per removed block
            removed.update(ev.block_hashes)
    # Every removal names a hash that was stored before, and never more often than it was stored.
    assert set(removed) <= set(stored)
    assert all(removed[h] <= stored[h] for h in removed)
    # Some hash was stored twice (the recomputed decode block) and, once evicted, removed twice: a consumer must
    # count copies per hash, not treat BlockRemoved as "gone".
    dup = [h for h, n in stored.items() if n >= 2]
    assert dup, "expected a hash stored twice"
    assert any(removed[h] == 2 for h in dup)
    # The cache never holds more than NUM_BLOCKS blocks.
    live = sum(stored.values()) - sum(removed.values())
    assert 0 <= live <= NUM_BLOCKS
    check_router_applier(events)


def check_router_applier(events: list[KVEvent]) -> None:
    """The router's applier fed the engine's real events in order: after every event, it counts exactly the copies
    the engine announced per hash, and its index holds a block exactly while at least one copy lives (removing one
    of two copies keeps the block; removing the last drops it)."""
    index, stats = LRUKVIndex(), IngestStats()
    applier = EndpointApplier("engine", MODEL_NAME, index, stats)
    live: Counter[int] = Counter()
    key_of: dict[int, int] = {}
    kept_after_a_removal = dropped_after_the_last = 0
    for ev in events:
        applier.apply([ev])
        if isinstance(ev, BlockStored):
            live.update(ev.block_hashes)
            for h in ev.block_hashes:
                key = applier.key_for(h)
                assert key is not None
                key_of[h] = key
        elif isinstance(ev, BlockRemoved):
            (h,) = ev.block_hashes
            live[h] -= 1
            held = index.match([key_of[h]], ["engine"]) == {"engine": 1}
            assert held == (live[h] > 0), (h, live[h])
            kept_after_a_removal += held
            dropped_after_the_last += not held
        for h in ev.block_hashes:
            assert applier.copies(h) == live[h]
    assert stats.unchained_blocks == 0
    assert stats.unknown_removals == 0
    assert kept_after_a_removal >= 1  # the duplicated hash: its first removal left the second copy indexed
    assert dropped_after_the_last >= 1
    assert stats.blocks_stored == sum(len(ev.block_hashes) for ev in events if isinstance(ev, BlockStored))
    assert stats.blocks_removed == sum(1 for ev in events if isinstance(ev, BlockRemoved))
