"""Block pool, KV-cache manager and scheduler semantics (vLLM v1), without sockets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kserve_llmd.simulator.block_pool import BlockPool
from kserve_llmd.simulator.hashing import extend_block_hashes, hash_block, none_hash, salt_extra
from kserve_llmd.simulator.kv_manager import KVCacheManager
from kserve_llmd.simulator.request import Sampling, SimRequest, Status
from kserve_llmd.simulator.scheduler import Scheduler
from kserve_llmd.wire.kv_events import BlockRemoved, BlockStored


def _req(rid: str, tokens: list[int], max_tokens: int = 1) -> SimRequest:
    return SimRequest(request_id=rid, prompt_token_ids=tokens, sampling=Sampling(max_tokens=max_tokens), arrival=0.0)


def _sched(num_blocks: int, block_size: int = 4, max_num_seqs: int = 8) -> Scheduler:
    kv = KVCacheManager(BlockPool(num_blocks, block_size), root_hash=none_hash(0, 0))
    counter = iter(range(10_000, 1_000_000))
    return Scheduler(kv, max_num_seqs=max_num_seqs, max_num_batched_tokens=1024, max_model_len=4096,
                     sample=lambda req: next(counter))


def _run(sched: Scheduler, steps: int = 100) -> list[SimRequest]:
    finished: list[SimRequest] = []
    for _ in range(steps):
        if not sched.has_work():
            break
        plan = sched.schedule(0.0)
        finished += sched.complete(plan, 0.0)[1]
    return finished


@given(st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=40), st.integers(1, 8))
def test_hashes_of_a_prefix_are_a_prefix(tokens: list[int], block_size: int) -> None:
    root = none_hash(1, 2)
    full: list[int] = []
    extend_block_hashes(full, tokens, block_size, root)
    assert len(full) == len(tokens) // block_size
    cut = len(tokens) // 2
    head: list[int] = []
    extend_block_hashes(head, tokens[:cut], block_size, root)
    assert head == full[:len(head)]
    extend_block_hashes(head, tokens, block_size, root)  # extending continues the chain
    assert head == full


def test_salt_and_engine_seed_split_hashes() -> None:
    tokens = list(range(8))
    a: list[int] = []
    b: list[int] = []
    c: list[int] = []
    extend_block_hashes(a, tokens, 4, none_hash(0, 0))
    extend_block_hashes(b, tokens, 4, none_hash(0, 0), salt_extra("s"))
    extend_block_hashes(c, tokens, 4, none_hash(0, 1))
    assert not set(a) & set(b)
    assert not set(a) & set(c)
    assert a[1] == hash_block(a[0], tokens[4:8])  # only the first block carries the salt; the chain inherits it


def test_freed_blocks_keep_hashes_and_hit_until_evicted_lru() -> None:
    pool = BlockPool(4, 4)
    kv = KVCacheManager(pool, root_hash=1)
    first = _req("a", list(range(9)))
    assert kv.allocate_slots(first, 9)
    stored = [e for e in pool.drain_events() if isinstance(e, BlockStored)]
    assert len(stored) == 1
    assert len(stored[0].block_hashes) == 2
    kv.free(first)
    assert pool.usage() == 0.0
    # Freed in reverse order: the partial block, then block 1, then block 0 join the LRU tail.
    blocks = [b.block_id for b in pool.blocks[:3]]
    assert pool.free_order() == [3, blocks[2], blocks[1], blocks[0]]
    again = _req("b", list(range(9)))
    hits, n = kv.computed_blocks(again)
    assert n == 8
    assert [b.block_id for b in hits] == blocks[:2]
    # A new prompt needing 4 blocks evicts in LRU order: block 3 (never hashed), partial, then block 1 then 0.
    other = _req("c", [100 + i for i in range(16)])
    assert kv.allocate_slots(other, 16)
    removed = [e.block_hashes[0] for e in pool.drain_events() if isinstance(e, BlockRemoved)]
    assert removed == [stored[0].block_hashes[1], stored[0].block_hashes[0]]
    assert kv.computed_blocks(_req("d", list(range(9))))[1] == 0
    assert not kv.allocate_slots(_req("e", [7] * 5), 5)  # nothing free


def test_hit_on_a_free_block_takes_it_off_the_free_queue() -> None:
    pool = BlockPool(3, 4)
    kv = KVCacheManager(pool, root_hash=1)
    a = _req("a", list(range(5)))
    kv.allocate_slots(a, 5)
    kv.free(a)
    b = _req("b", list(range(5)))
    hits, n = kv.computed_blocks(b)
    assert kv.allocate_slots(b, 5 - n, hits)
    assert pool.blocks[0].ref_cnt == 1
    assert 0 not in pool.free_order()


def test_scheduler_batches_and_queues_at_max_num_seqs() -> None:
    sched = _sched(64, max_num_seqs=2)
    reqs = [_req(str(i), [i * 100 + j for j in range(5)], max_tokens=3) for i in range(3)]
    for r in reqs:
        sched.add(r)
    plan = sched.schedule(0.0)
    assert [r.request_id for r, _ in plan.scheduled] == ["0", "1"]
    assert plan.prefill_tokens == 10
    assert len(sched.waiting) == 1
    sched.complete(plan, 0.0)
    plan = sched.schedule(0.0)
    assert plan.decode_requests == 2
    assert plan.prefill_requests == 0
    finished = _run(sched)
    assert {r.request_id for r in finished} | {"0", "1"} == {"0", "1", "2"}
    assert all(len(r.output_token_ids) == 3 and r.finish_reason == "length" for r in reqs)


def test_preemption_of_the_newest_running_request_and_recompute() -> None:
    # 4 blocks of 4 tokens; two requests of 7 prompt tokens each take 2 blocks; decoding needs a third each.
    sched = _sched(4)
    old, new = _req("old", list(range(7)), max_tokens=6), _req("new", list(range(50, 57)), max_tokens=6)
    sched.add(old)
    sched.add(new)
    finished = _run(sched)
    assert {r.request_id for r in finished} == {"old", "new"}
    assert sched.num_preemptions >= 1
    assert new.num_preemptions >= 1
    assert old.num_preemptions == 0
    assert len(new.output_token_ids) == 6
    assert new.status is Status.FINISHED
