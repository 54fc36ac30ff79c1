"""The shared KV-event codec, checked against hand-built msgpack (not against its own encoder alone)."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kserve_llmd.errors import EventDecodeError
from kserve_llmd.wire.kv_events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    EventBatch,
    decode_batch,
    decode_seq,
    encode_batch,
    encode_seq,
)

BIG = (1 << 64) - 5  # a hash >= 2**63, as vLLM publishes them


def test_decodes_vllm_map_encoding() -> None:
    payload = msgpack.packb([
        1.5,
        [
            {"type": "BlockStored", "block_hashes": [BIG, 7], "parent_block_hash": None,
             "token_ids": list(range(64)), "block_size": 32, "lora_id": None, "medium": "GPU",
             "lora_name": None, "group_idx": 0, "kv_cache_spec_kind": "full_attention"},
            {"type": "BlockRemoved", "block_hashes": [7], "medium": "GPU"},
            {"type": "AllBlocksCleared"},
        ],
        None,
    ])
    batch = decode_batch(payload)
    assert batch.ts == 1.5
    stored, removed, cleared = batch.events
    assert isinstance(stored, BlockStored)
    assert stored.block_hashes == [BIG, 7]
    assert stored.parent_block_hash is None
    assert stored.block_size == 32
    assert stored.medium == "GPU"
    assert stored.group_idx == 0
    assert isinstance(removed, BlockRemoved)
    assert removed.block_hashes == [7]
    assert isinstance(cleared, AllBlocksCleared)


def test_decodes_vllm_positional_encoding_with_bytes_hashes() -> None:
    digest = bytes(range(32))
    payload = msgpack.packb([2.0, [["BlockStored", [digest], digest, [1, 2, 3, 4], 4, None, "GPU"],
                                   ["BlockRemoved", [digest], "GPU"], ["AllBlocksCleared"]]])
    batch = decode_batch(payload)
    stored = batch.events[0]
    assert isinstance(stored, BlockStored)
    assert stored.block_hashes == [int.from_bytes(digest[-8:], "big")]
    assert stored.parent_block_hash == int.from_bytes(digest[-8:], "big")
    assert batch.data_parallel_rank is None


@pytest.mark.parametrize("encoding", ["map", "positional"])
def test_round_trip(encoding: str) -> None:
    batch = EventBatch(3.0, [BlockStored([BIG], 9, [5] * 16, 16, None, "GPU"), BlockRemoved([BIG], "GPU"),
                             AllBlocksCleared()], data_parallel_rank=1)
    raw = msgpack.unpackb(encode_batch(batch, encoding))  # type: ignore[arg-type]
    assert raw[2] == 1
    assert (raw[1][0]["type"] if encoding == "map" else raw[1][0][0]) == "BlockStored"
    assert decode_batch(encode_batch(batch, encoding)) == batch  # type: ignore[arg-type]


def test_sequence_frames() -> None:
    assert encode_seq(258) == b"\x00" * 6 + b"\x01\x02"
    assert decode_seq(encode_seq(2**63 + 1)) == 2**63 + 1
    assert decode_seq(b"\xff" * 8) == -1
    with pytest.raises(EventDecodeError):
        decode_seq(b"\x00")


@pytest.mark.parametrize("payload", [
    b"", b"\xc1", msgpack.packb({"a": 1}), msgpack.packb([1.0]), msgpack.packb(["x", []]),
    msgpack.packb([1.0, [["Nope"]]]), msgpack.packb([1.0, [{"type": "BlockStored"}]]),
    msgpack.packb([1.0, [["BlockStored", [1], None, [1, 2], 4, None, None]]]),  # token count mismatch
    msgpack.packb([1.0, [["BlockRemoved", "notalist", None]]]),
    msgpack.packb([1.0, [["BlockRemoved", [1.5], None]]]),
    msgpack.packb([1.0, [["BlockRemoved", ["str"], None]]]),
])
def test_malformed_payloads_raise_event_decode_error(payload: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode_batch(payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(EventDecodeError):
        decode_batch(data)
