"""KV events on the wire, checked with an independent decoder (raw zmq + msgpack.unpackb), and the replay socket."""

from __future__ import annotations

import asyncio

import aiohttp
import zmq
import zmq.asyncio

from tests.simulator.conftest import complete, unpack, words


async def test_block_stored_fields(make_cluster, subscriber, http: aiohttp.ClientSession) -> None:
    cluster = await make_cluster()
    info = cluster.engines[0]
    sub = subscriber(info.kv_events)
    next_seq = await sub.sync(http, info.url)
    prompt = words(10, "s")
    # 10 prompt + 3 output tokens; the last sampled token is never computed, so 12 tokens = 3 blocks get KV.
    reply = await complete(http, info.url, prompt, max_tokens=3)
    topic, seq, payload = await sub.recv()
    port = info.url.rsplit(":", 1)[1]
    assert topic == f"kv@127.0.0.1:{port}@sim-model".encode()
    assert len(seq) == 8
    assert int.from_bytes(seq, "big") == next_seq
    batch = unpack(payload)
    assert isinstance(batch, list)
    # [ts, events, data_parallel_rank]: the real vLLM 0.32 publisher fills the rank in (docs/real-vllm-findings.md)
    assert len(batch) == 3
    ts, events, rank = batch
    assert rank == 0
    assert isinstance(ts, float)
    assert len(events) == 1
    ev = events[0]
    assert ev["type"] == "BlockStored"
    assert ev["block_size"] == 4
    assert ev["parent_block_hash"] is None
    assert ev["medium"] == "GPU"
    assert ev["lora_id"] is None
    assert ev["group_idx"] == 0
    assert ev["kv_cache_spec_kind"] == "full_attention"
    hashes = ev["block_hashes"]
    assert ev["extra_keys"] == [None] * len(hashes)
    # The prompt's two full blocks are stored when scheduled; output blocks follow in later steps.
    assert len(hashes) == 2
    assert all(isinstance(h, int) and 0 <= h < 2**64 for h in hashes)
    token_ids = ev["token_ids"]
    async with http.post(info.url + "/tokenize", json={"prompt": prompt}) as resp:
        prompt_ids = (await resp.json())["tokens"]
    assert token_ids == prompt_ids[:8]
    # The third block fills during decode (2 prompt + 2 generated tokens), chained on the second block.
    _, seq2, payload2 = await sub.recv()
    assert int.from_bytes(seq2, "big") == next_seq + 1
    ev2 = unpack(payload2)[1][0]
    assert ev2["type"] == "BlockStored"
    assert ev2["parent_block_hash"] == hashes[-1]
    assert len(ev2["block_hashes"]) == 1
    assert ev2["block_hashes"][0] not in hashes
    async with http.post(info.url + "/tokenize", json={"prompt": reply["choices"][0]["text"]}) as resp:
        output_ids = (await resp.json())["tokens"]
    assert ev2["token_ids"] == prompt_ids[8:10] + output_ids[:2]
    assert await sub.drain() == []


async def test_eviction_publishes_block_removed_in_lru_order(make_cluster, subscriber,
                                                             http: aiohttp.ClientSession) -> None:
    cluster = await make_cluster(kv_cache_size=8)  # 8 blocks of 4 tokens
    info = cluster.engines[0]
    sub = subscriber(info.kv_events)
    await sub.sync(http, info.url)
    await sub.drain()
    await complete(http, info.url, words(8, "a"), max_tokens=1)  # 9 tokens: blocks A0 A1 (+ partial)
    stored_a = unpack((await sub.recv())[2])[1][0]["block_hashes"]
    await sub.drain()
    # Fill the whole cache with a long request: every free block is reused, the oldest freed first.
    await complete(http, info.url, words(32, "b"), max_tokens=1)  # exactly 8 blocks
    removed: list[int] = []
    for frames in [await sub.recv(), *await sub.drain()]:
        for ev in unpack(frames[2])[1]:
            if ev["type"] == "BlockRemoved":
                assert ev["medium"] == "GPU"
                removed.extend(ev["block_hashes"])
    assert set(stored_a) <= set(removed)
    # A's blocks were freed tail-first (reverse order), so A1 is evicted before A0.
    assert removed.index(stored_a[1]) < removed.index(stored_a[0])
    again = await complete(http, info.url, words(8, "a"), max_tokens=1)
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


async def test_reset_prefix_cache_publishes_all_blocks_cleared(make_cluster, subscriber,
                                                               http: aiohttp.ClientSession) -> None:
    cluster = await make_cluster(event_encoding="positional")
    info = cluster.engines[0]
    sub = subscriber(info.kv_events)
    await sub.sync(http, info.url)
    await complete(http, info.url, words(9, "p"), max_tokens=1)
    stored = unpack((await sub.recv())[2])[1][0]
    assert stored[0] == "BlockStored"
    hashes, parent, token_ids, block_size, lora_id, medium = stored[1:7]
    assert len(hashes) == 2
    assert parent is None
    assert len(token_ids) == 8
    assert block_size == 4
    assert lora_id is None
    assert medium == "GPU"
    await sub.drain()
    async with http.post(info.url + "/reset_prefix_cache") as resp:
        assert resp.status == 200
    cleared = unpack((await sub.recv())[2])[1]
    assert cleared == [["AllBlocksCleared"]]
    again = await complete(http, info.url, words(9, "p"), max_tokens=1)
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


async def test_replay_socket_returns_buffered_batches_then_end_marker(make_cluster, subscriber,
                                                                      http: aiohttp.ClientSession) -> None:
    cluster = await make_cluster()
    info = cluster.engines[0]
    sub = subscriber(info.kv_events)
    await sub.sync(http, info.url)
    for i in range(3):
        await complete(http, info.url, words(9, f"r{i}x"), max_tokens=1)
    live = [await sub.recv() for _ in range(3)]
    start = int.from_bytes(live[1][1], "big")
    ctx = zmq.asyncio.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        dealer.connect(info.replay)
        await dealer.send_multipart([b"", start.to_bytes(8, "big")])
        replies = []
        while True:
            assert await dealer.poll(5000), "replay did not answer"
            frames = await dealer.recv_multipart()
            replies.append(frames)
            if frames[2] == b"\xff" * 8:
                break
    finally:
        dealer.close(linger=0)
        ctx.term()
    *batches, end = replies
    assert end == [b"", b"", b"\xff" * 8, b""]
    # vLLM 0.33 layout: [empty delimiter, topic, seq, payload]; same bytes as the live messages.
    assert [f[1:] for f in batches] == [list(m) for m in live[1:]]
    assert all(f[0] == b"" for f in batches)


async def test_a_steps_events_are_published_after_the_step_as_vllm_does(make_cluster, subscriber,
                                                                        http: aiohttp.ClientSession) -> None:
    # tiny profile at time-scale 10,000: a prefill step lasts ~1 s. vLLM 0.32 publishes a step's events in
    # update_from_output, after the forward pass; publishing at schedule time would announce the blocks at once.
    cluster = await make_cluster(time_scale=10_000.0)
    info = cluster.engines[0]
    sub = subscriber(info.kv_events)
    await sub.sync(http, info.url)
    await sub.drain()
    request = asyncio.create_task(complete(http, info.url, words(10, "late"), max_tokens=1))
    assert not await sub.sock.poll(300), "the step's BlockStored was published before the step ran"
    await request
    events = unpack((await sub.recv())[2])[1]
    assert [ev["type"] for ev in events] == ["BlockStored"]
