"""Workloads: exact token counts under the built-in tokenizer, sharing structure, seeded reproducibility."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import orjson
import pytest

from kserve_llmd.benchmark.distributions import Distribution, sample_length
from kserve_llmd.benchmark.workloads import MultiTurn, RandomPrompts, SharedPrefix, Trace
from kserve_llmd.errors import ConfigError
from kserve_llmd.tokenizer import BuiltinTokenizer

TOKENIZER = BuiltinTokenizer()


def test_shared_prefix_has_exact_lengths_and_shares_each_groups_system_prompt() -> None:
    spec = SharedPrefix(num_groups=3, prompts_per_group=4, system_prompt_len=50, question_len=7, output_len=9)
    requests = list(itertools.islice(spec.generate(random.Random(1)), 24))
    first_pass = requests[:12]
    assert sorted(r.group or "" for r in first_pass) == sorted(f"g{g}" for g in range(3) for _ in range(4))
    assert len({r.prompt for r in first_pass}) == 12  # every question distinct within a pass
    assert {r.prompt for r in requests[12:]} == {r.prompt for r in first_pass}  # then the prompts repeat
    for r in requests:
        assert r.prompt is not None
        assert len(TOKENIZER.encode(r.prompt)) == r.prompt_tokens == 57
        assert r.max_tokens == 9
    by_group: dict[str, set[str]] = {}
    for r in first_pass:
        by_group.setdefault(r.group or "", set()).add(" ".join((r.prompt or "").split()[:50]))
    assert all(len(prefixes) == 1 for prefixes in by_group.values())
    assert len({next(iter(p)) for p in by_group.values()}) == 3  # groups differ


def test_shared_prefix_orders_inference_perf_fixed_or_reshuffled_per_pass() -> None:
    fields = {"num_groups": 3, "prompts_per_group": 4, "system_prompt_len": 5, "question_len": 2, "output_len": 1}
    fixed = SharedPrefix(**fields)  # inference-perf: shuffled once, that order cycled, restarted at every level
    reshuffled = SharedPrefix(**fields, order="reshuffled")
    assert fixed.order == "inference-perf"
    assert fixed.restarts_each_level()
    assert not reshuffled.restarts_each_level()
    a = [r.prompt for r in itertools.islice(fixed.generate(random.Random(4)), 36)]
    b = [r.prompt for r in itertools.islice(reshuffled.generate(random.Random(4)), 36)]
    assert a[:12] == b[:12]  # the same prompts and the same first pass
    assert a[12:24] == a[:12]
    assert a[24:] == a[:12]
    assert b[12:24] != b[:12]  # a new order every pass,
    assert sorted(b[12:24]) == sorted(b[:12])  # every prompt once per pass


def test_workloads_are_reproducible_from_the_seed() -> None:
    spec = SharedPrefix(num_groups=2, prompts_per_group=2, system_prompt_len=5, question_len=3, output_len=2)
    a = list(itertools.islice(spec.generate(random.Random(5)), 8))
    b = list(itertools.islice(spec.generate(random.Random(5)), 8))
    c = list(itertools.islice(spec.generate(random.Random(6)), 8))
    assert a == b
    assert a != c


def test_distributions_are_clamped_and_seeded() -> None:
    dist = Distribution(dist="normal", mean=100, std=50, min=60, max=130)
    draws = [sample_length(dist, random.Random(i)) for i in range(200)]
    assert min(draws) >= 60
    assert max(draws) <= 130
    assert len(set(draws)) > 10
    assert sample_length(17, random.Random(0)) == 17
    with pytest.raises(ValueError, match="min"):
        Distribution(dist="uniform", min=5, max=4)


def test_multi_turn_history_grows_and_sessions_are_tagged() -> None:
    spec = MultiTurn(num_sessions=2, turns=3, system_prompt_len=10, user_len=4, output_len=6)
    requests = list(itertools.islice(spec.generate(random.Random(2)), 6))
    sessions: dict[str, list[int]] = {}
    for r in requests:
        assert r.messages is not None
        assert r.path == "/v1/chat/completions"
        assert dict(r.headers)["x-session-id"] == r.group
        sessions.setdefault(r.group or "", []).append(len(r.messages))
    assert sorted(sessions.values()) == [[2, 4, 6], [2, 4, 6]]  # system + (user, assistant) per turn
    # waves: turn k of every session before turn k + 1 of any
    assert [len(r.messages or ()) for r in requests] == [2, 2, 4, 4, 6, 6]
    later = next(r for r in requests if len(r.messages or ()) == 4)
    earlier = next(r for r in requests if r.group == later.group and len(r.messages or ()) == 2)
    assert later.messages is not None
    assert earlier.messages is not None
    assert later.messages[:2] == earlier.messages  # the history is a prefix of the next turn
    assert len(later.messages[2]["content"].split()) == 6  # the assistant turn has output_len tokens


def test_random_prompts_share_nothing() -> None:
    spec = RandomPrompts(prompt_len=40, output_len=3)
    requests = list(itertools.islice(spec.generate(random.Random(3)), 20))
    assert all(len(TOKENIZER.encode(r.prompt or "")) == 40 for r in requests)
    assert len({(r.prompt or "").split()[0] for r in requests}) >= 19


def test_trace_replay_mooncake_hash_ids_share_blocks(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    rows = [{"timestamp": 1000, "input_length": 10, "output_length": 5, "hash_ids": [1, 2, 3]},
            {"timestamp": 1500, "input_length": 7, "output_length": 2, "hash_ids": [1, 9]},
            {"arrival_s": 2.0, "prompt": "free text here", "max_tokens": 4, "session_id": "s"}]
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    requests = list(Trace(path=str(path), block_size=4).generate(random.Random(0)))
    assert [r.arrival_s for r in requests] == [0.0, 0.5, 1.0]
    assert [r.max_tokens for r in requests] == [5, 2, 4]
    a, b, c = ((r.prompt or "").split() for r in requests)
    assert len(a) == 10
    assert len(b) == 7
    assert a[:4] == b[:4]
    assert a[4:8] != b[4:7]
    assert c == ["free", "text", "here"]
    assert dict(requests[2].headers) == {"x-session-id": "s"}


def test_trace_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        list(Trace(path=str(tmp_path / "missing.jsonl")).generate(random.Random(0)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1"):
        list(Trace(path=str(bad)).generate(random.Random(0)))
