"""The engine's own prefix-cache block hash (deliberately NOT vLLM's, and seeded per engine).

vLLM chains ``H((parent_hash or NONE_HASH, tuple(block_tokens), extra_keys))`` over FULL blocks only
(vllm/v1/core/kv_cache_utils.py). We keep that structure with a cheap, portable function::

    NONE_HASH(seed, engine)      = u64(blake2b("kserve-llmd-sim/none-hash/{seed}/{engine}"))
    hash_block(parent, tokens, extra) = u64(blake2b(parent as 8 bytes BE || tokens as u32 LE || extra))

where ``u64`` takes the 8-byte digest as a big-endian unsigned int (vLLM publishes the last 8 bytes of its digest
the same way). ``extra`` is ``b""`` or the cache salt (UTF-8, length-prefixed); like vLLM only the first block
carries it, and the chain inherits it. A router cannot reproduce these hashes (different seeds per engine), which
is the point: REFERENCE 1.2 says routers must key on their own hashes and map the engine's.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from hashlib import blake2b


def none_hash(seed: int, engine_index: int) -> int:
    """The chain seed of one engine (the parent of every prompt's first block)."""
    digest = blake2b(f"kserve-llmd-sim/none-hash/{seed}/{engine_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def salt_extra(cache_salt: str | None) -> bytes:
    """Extra-key bytes of a cache salt (empty when there is none)."""
    if not cache_salt:
        return b""
    raw = cache_salt.encode()
    return len(raw).to_bytes(4, "big") + raw


def hash_block(parent: int, tokens: Sequence[int], extra: bytes = b"") -> int:
    """Hash of one full block chained on ``parent`` (see the module docstring)."""
    h = blake2b(parent.to_bytes(8, "big"), digest_size=8)
    h.update(array("I", tokens).tobytes())
    if extra:
        h.update(extra)
    return int.from_bytes(h.digest(), "big")


def extend_block_hashes(hashes: list[int], token_ids: Sequence[int], block_size: int, root: int,
                        extra: bytes = b"") -> None:
    """Append to ``hashes`` the hashes of every FULL block of ``token_ids`` not hashed yet (in place)."""
    full = len(token_ids) // block_size
    i = len(hashes)
    parent = hashes[-1] if hashes else root
    while i < full:
        parent = hash_block(parent, token_ids[i * block_size:(i + 1) * block_size], extra if i == 0 else b"")
        hashes.append(parent)
        i += 1
