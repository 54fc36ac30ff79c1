"""vLLM KV-cache events on the wire (vllm/distributed/kv_events.py), encoded and decoded with plain msgpack.

One ZMQ multipart message per engine step that has events::

    [topic: bytes, seq: 8-byte big-endian unsigned, payload: msgpack EventBatch]

``EventBatch`` is a msgpack ARRAY ``[ts, events]`` or ``[ts, events, data_parallel_rank]`` (msgspec omits trailing
defaults). Each event comes in one of two encodings, and both are accepted here:

- positional (vLLM <= 0.23): ``["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id,
  medium, lora_name?]``, ``["BlockRemoved", block_hashes, medium?]``, ``["AllBlocksCleared"]``;
- map (vLLM >= 0.24): ``{"type": "BlockStored", "block_hashes": ..., ...}`` with empty optional fields omitted
  (vLLM 0.32 as seen here sends 11 keys per BlockStored and ``group_idx`` on BlockRemoved:
  docs/real-vllm-findings.md 1.2).

Block hashes are unsigned 64-bit ints, or raw digest bytes (then the last 8 bytes, big-endian, are the int).
Decoding never trusts the payload: wrong types, truncated msgpack and oversized arrays raise ``EventDecodeError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

from kserve_llmd.errors import EventDecodeError

Encoding = Literal["map", "positional"]

#: Sequence-number frame of the end-of-replay marker (-1 as 8 bytes).
REPLAY_END_SEQ = b"\xff" * 8
_SEQ = struct.Struct(">Q")
_U64 = (1 << 64) - 1

# Bounds that keep a hostile payload from costing unbounded memory or time.
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
MAX_EVENTS_PER_BATCH = 100_000
MAX_BLOCKS_PER_EVENT = 1_000_000


@dataclass(slots=True)
class BlockStored:
    block_hashes: list[int]
    parent_block_hash: int | None
    token_ids: list[int]
    block_size: int
    lora_id: int | None = None
    medium: str | None = None
    lora_name: str | None = None
    extra_keys: list[Any] | None = None
    group_idx: int | None = None
    kv_cache_spec_kind: str | None = None


@dataclass(slots=True)
class BlockRemoved:
    block_hashes: list[int]
    medium: str | None = None
    group_idx: int | None = None


@dataclass(slots=True)
class AllBlocksCleared:
    pass


KVEvent = BlockStored | BlockRemoved | AllBlocksCleared


@dataclass(slots=True)
class EventBatch:
    ts: float
    events: list[KVEvent] = field(default_factory=list)
    data_parallel_rank: int | None = None


# --------------------------------------------------------------------------------------------- sequence frames


def encode_seq(seq: int) -> bytes:
    return _SEQ.pack(seq)


def decode_seq(frame: bytes) -> int:
    """The batch's sequence number; -1 for the replay end marker."""
    if len(frame) != 8:
        raise EventDecodeError(f"sequence frame must be 8 bytes, got {len(frame)}")
    if frame == REPLAY_END_SEQ:
        return -1
    return int(_SEQ.unpack(frame)[0])


# --------------------------------------------------------------------------------------------- encoding


def _event_to_wire(event: KVEvent, encoding: Encoding) -> Any:
    if isinstance(event, BlockStored):
        if encoding == "positional":
            return [
                "BlockStored", event.block_hashes, event.parent_block_hash, event.token_ids,
                event.block_size, event.lora_id, event.medium, event.lora_name,
            ]
        out: dict[str, Any] = {
            "type": "BlockStored",
            "block_hashes": event.block_hashes,
            "parent_block_hash": event.parent_block_hash,
            "token_ids": event.token_ids,
            "block_size": event.block_size,
            "lora_id": event.lora_id,
            "medium": event.medium,
            "lora_name": event.lora_name,
        }
        if event.extra_keys is not None:
            out["extra_keys"] = event.extra_keys
        if event.group_idx is not None:
            out["group_idx"] = event.group_idx
        if event.kv_cache_spec_kind is not None:
            out["kv_cache_spec_kind"] = event.kv_cache_spec_kind
        return out
    if isinstance(event, BlockRemoved):
        if encoding == "positional":
            return ["BlockRemoved", event.block_hashes, event.medium]
        removed: dict[str, Any] = {"type": "BlockRemoved", "block_hashes": event.block_hashes, "medium": event.medium}
        if event.group_idx is not None:
            removed["group_idx"] = event.group_idx
        return removed
    if encoding == "positional":
        return ["AllBlocksCleared"]
    return {"type": "AllBlocksCleared"}


def encode_batch(batch: EventBatch, encoding: Encoding = "map") -> bytes:
    wire: list[Any] = [batch.ts, [_event_to_wire(e, encoding) for e in batch.events]]
    if batch.data_parallel_rank is not None:
        wire.append(batch.data_parallel_rank)
    return msgpack.packb(wire, use_bin_type=True)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------- decoding


def block_hash_to_int(value: Any) -> int:
    """An engine block hash as an unsigned 64-bit int (ints pass through; bytes: the last 8, big-endian)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not -(1 << 63) <= value <= _U64:
            raise EventDecodeError(f"block hash {value} does not fit 64 bits")
        return value & _U64
    if isinstance(value, bytes | bytearray):
        if not value:
            raise EventDecodeError("empty block hash")
        return int.from_bytes(value[-8:], "big")
    raise EventDecodeError(f"block hash must be int or bytes, got {type(value).__name__}")


def _hashes(value: Any, what: str) -> list[int]:
    if not isinstance(value, list):
        raise EventDecodeError(f"{what} must be a list, got {type(value).__name__}")
    if len(value) > MAX_BLOCKS_PER_EVENT:
        raise EventDecodeError(f"{what} has {len(value)} entries, over {MAX_BLOCKS_PER_EVENT}")
    return [block_hash_to_int(h) for h in value]


def _opt_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise EventDecodeError(f"{what} must be an int or null, got {type(value).__name__}")


def _opt_str(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise EventDecodeError(f"{what} must be a string or null, got {type(value).__name__}")


def _token_ids(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise EventDecodeError(f"token_ids must be a list, got {type(value).__name__}")
    for t in value:
        if not isinstance(t, int) or isinstance(t, bool):
            raise EventDecodeError("token_ids must hold ints")
    return value


def _block_stored(f: dict[str, Any]) -> BlockStored:
    hashes = _hashes(f.get("block_hashes"), "block_hashes")
    parent = f.get("parent_block_hash")
    block_size = f.get("block_size")
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size <= 0:
        raise EventDecodeError(f"block_size must be a positive int, got {block_size!r}")
    token_ids = _token_ids(f.get("token_ids"))
    if len(token_ids) != len(hashes) * block_size:
        raise EventDecodeError(
            f"BlockStored has {len(token_ids)} token ids for {len(hashes)} blocks of {block_size}"
        )
    extra = f.get("extra_keys")
    return BlockStored(
        block_hashes=hashes,
        parent_block_hash=None if parent is None else block_hash_to_int(parent),
        token_ids=token_ids,
        block_size=block_size,
        lora_id=_opt_int(f.get("lora_id"), "lora_id"),
        medium=_opt_str(f.get("medium"), "medium"),
        lora_name=_opt_str(f.get("lora_name"), "lora_name"),
        extra_keys=extra if isinstance(extra, list) else None,
        group_idx=_opt_int(f.get("group_idx"), "group_idx"),
        kv_cache_spec_kind=_opt_str(f.get("kv_cache_spec_kind"), "kv_cache_spec_kind"),
    )


_POSITIONAL_FIELDS = {
    "BlockStored": ("block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id", "medium",
                    "lora_name", "extra_keys", "group_idx"),
    "BlockRemoved": ("block_hashes", "medium", "group_idx"),
    "AllBlocksCleared": (),
}


def decode_event(raw: Any) -> KVEvent:
    if isinstance(raw, dict):
        tag = raw.get("type")
        fields = raw
    elif isinstance(raw, list) and raw:
        tag = raw[0]
        names = _POSITIONAL_FIELDS.get(tag) if isinstance(tag, str) else None
        if names is None:
            raise EventDecodeError(f"unknown event type {tag!r}")
        fields = dict(zip(names, raw[1:], strict=False))
    else:
        raise EventDecodeError(f"event must be a map or a non-empty array, got {type(raw).__name__}")
    if tag == "BlockStored":
        return _block_stored(fields)
    if tag == "BlockRemoved":
        return BlockRemoved(_hashes(fields.get("block_hashes"), "block_hashes"),
                            _opt_str(fields.get("medium"), "medium"), _opt_int(fields.get("group_idx"), "group_idx"))
    if tag == "AllBlocksCleared":
        return AllBlocksCleared()
    raise EventDecodeError(f"unknown event type {tag!r}")


def decode_batch(payload: bytes) -> EventBatch:
    """Decode one msgpack EventBatch; any malformed input raises ``EventDecodeError`` (never anything else)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise EventDecodeError(f"payload of {len(payload)} bytes is over {MAX_PAYLOAD_BYTES}")
    try:
        raw = msgpack.unpackb(
            payload, raw=False, strict_map_key=False,
            max_array_len=MAX_BLOCKS_PER_EVENT * 16, max_map_len=64,
        )
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise EventDecodeError(f"payload is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(raw, list) or len(raw) not in (2, 3):
        raise EventDecodeError("EventBatch must be an array [ts, events, data_parallel_rank?]")
    ts, events = raw[0], raw[1]
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        raise EventDecodeError(f"EventBatch.ts must be a number, got {type(ts).__name__}")
    if not isinstance(events, list):
        raise EventDecodeError(f"EventBatch.events must be an array, got {type(events).__name__}")
    if len(events) > MAX_EVENTS_PER_BATCH:
        raise EventDecodeError(f"EventBatch has {len(events)} events, over {MAX_EVENTS_PER_BATCH}")
    rank = _opt_int(raw[2], "data_parallel_rank") if len(raw) == 3 else None
    return EventBatch(float(ts), [decode_event(e) for e in events], rank)
