"""Properties of the router's own chained block keys (router/hashing.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kserve_llmd.router.hashing import KEY_MASK, block_keys, seed_for

tokens_st = st.lists(st.integers(min_value=0, max_value=2**31 - 1), max_size=200)
block_st = st.integers(min_value=1, max_value=17)
SEED = seed_for("m")


@given(tokens_st, tokens_st, block_st)
def test_prefix_of_tokens_gives_prefix_of_keys(a: list[int], b: list[int], bs: int) -> None:
    short, long = block_keys(a, bs, SEED), block_keys(a + b, bs, SEED)
    assert long[: len(short)] == short
    assert len(long) == (len(a) + len(b)) // bs


@given(tokens_st, st.integers(min_value=0, max_value=20), block_st)
def test_chaining_from_parent_equals_hashing_the_concatenation(tokens: list[int], cut_blocks: int, bs: int) -> None:
    cut = min(cut_blocks, len(tokens) // bs) * bs
    head = block_keys(tokens[:cut], bs, SEED)
    tail = block_keys(tokens[cut:], bs, SEED, parent=head[-1] if head else None)
    assert head + tail == block_keys(tokens, bs, SEED)


@given(st.lists(st.integers(min_value=0, max_value=50_000), min_size=4, max_size=64))
def test_different_model_lora_or_salt_give_disjoint_keys(tokens: list[int]) -> None:
    seeds = [seed_for("m"), seed_for("m2"), seed_for("m", "lora-a"), seed_for("m", None, "salt"),
             seed_for("m", "lora-a", "salt"), seed_for("m", "salt")]  # lora "salt" ≠ salt "salt"
    assert len(set(seeds)) == len(seeds)
    key_sets = [set(block_keys(tokens, 4, s)) for s in seeds]
    for i, keys in enumerate(key_sets):
        for other in key_sets[i + 1:]:
            assert not keys & other


@given(tokens_st, block_st)
def test_keys_are_unsigned_and_only_full_blocks(tokens: list[int], bs: int) -> None:
    keys = block_keys(tokens, bs, SEED)
    assert len(keys) == len(tokens) // bs
    assert all(0 <= k <= KEY_MASK for k in keys)


def test_one_token_changes_every_later_key_and_no_earlier_key() -> None:
    tokens = list(range(64))
    changed = list(tokens)
    changed[20] = 999
    a, b = block_keys(tokens, 8, SEED), block_keys(changed, 8, SEED)
    assert a[:2] == b[:2]
    assert all(x != y for x, y in zip(a[2:], b[2:], strict=True))


def test_tuple_and_list_inputs_agree_and_bad_block_size_raises() -> None:
    tokens = list(range(50))
    assert block_keys(tokens, 7, SEED) == block_keys(tuple(tokens), 7, SEED)
    with pytest.raises(ValueError, match="block_size"):
        block_keys(tokens, 0, SEED)


def test_deterministic_across_processes_with_different_hash_seeds() -> None:
    code = (
        "from kserve_llmd.router.hashing import block_keys, seed_for;"
        "print(block_keys(list(range(1000, 1100)), 16, seed_for('model', 'lora', 'salt')))"
    )
    outputs = set()
    for hash_seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(out.stdout)
    assert outputs == {str(block_keys(list(range(1000, 1100)), 16, seed_for("model", "lora", "salt"))) + "\n"}
