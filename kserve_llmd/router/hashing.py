"""The router's OWN chained block keys: a pure, seeded, deterministic function of token ids.

vLLM's own block hashes cannot be reproduced reliably by a router (the chain seed ``NONE_HASH`` depends on
``PYTHONHASHSEED`` or per-process random bytes in some releases, and the default algorithm is pickle+sha256), so,
as llm-d does, the router hashes token ids itself and maps the engine's hashes to these keys when events arrive.

Formula (only FULL blocks are keyed; a trailing partial block never is)::

    seed      = blake2b(model, lora, cache_salt) & (2**60 - 1)     # once per (model, lora, salt), cached
    key[-1]   = parent if parent is not None else seed
    key[i]    = hash((key[i-1], tuple(token_ids[i*B:(i+1)*B]))) & (2**60 - 1)    # B = block_size

``hash`` is CPython's built-in hash of a tuple of ints. It is C-fast and DETERMINISTIC ACROSS PROCESSES:
``PYTHONHASHSEED`` randomises only str/bytes/datetime hashing, never int or tuple-of-int hashing (the tuple hash is
an xxHash-style mix of the element hashes, and ``hash(n)`` of an int is ``n mod (2**61 - 1)``, sign kept).
The test suite checks this with subprocesses run under different ``PYTHONHASHSEED`` values. The key is masked to
60 bits: still collision-free in practice (about 4e-7 chance of any collision among a million keys) and the ints
stay small (32 bytes each instead of 48) in the per-request key lists; the index stores keys as raw 8 bytes.

Properties (property-tested): a prefix of tokens gives a prefix of keys; chaining from ``parent`` equals hashing the
concatenation; different model / LoRA / cache_salt give disjoint keys. Not cryptographic: a client able to craft
collisions can at worst mislead routing, never the engine's cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

from kserve_llmd.types import BlockKey

KEY_BITS = 60
KEY_MASK = (1 << KEY_BITS) - 1


@lru_cache(maxsize=4096)
def seed_for(model: str, lora: str | None = None, cache_salt: str | None = None) -> BlockKey:
    """The chain seed of a (model, LoRA adapter, cache_salt) triple: blake2b of the three, as a key."""
    text = repr((model, lora, cache_salt))  # unambiguous: quoting keeps ("a", None) and ("a", "None") apart
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & KEY_MASK


def block_keys(
    token_ids: Sequence[int], block_size: int, seed_key: BlockKey, parent: BlockKey | None = None
) -> list[BlockKey]:
    """Chained keys of the full blocks of ``token_ids`` (``len(token_ids) // block_size`` keys).

    ``parent`` is the key of the block just before ``token_ids[0]`` (None: the prompt starts here and the chain
    starts from ``seed_key``). A parent key already carries its seed, so ``seed_key`` is unused when it is given.
    """
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    n_blocks = len(token_ids) // block_size
    if n_blocks == 0:
        return []
    tokens = token_ids if isinstance(token_ids, tuple) else tuple(token_ids[: n_blocks * block_size])
    prev = seed_key if parent is None else parent
    out = [0] * n_blocks
    start = 0
    for i in range(n_blocks):
        end = start + block_size
        prev = hash((prev, tokens[start:end])) & KEY_MASK
        out[i] = prev
        start = end
    return out
