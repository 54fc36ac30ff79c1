"""The step timing model's formulas and the profiles."""

from __future__ import annotations

import random

import pytest

from kserve_llmd.simulator.profiles import PROFILES, TimingParams, get_profile
from kserve_llmd.simulator.timing import StepTimingModel


def test_step_time_formula() -> None:
    p = TimingParams(prefill_overhead=0.01, prefill_time_per_token=0.001, inter_token_latency=0.005,
                     time_factor_under_load=3.0, kv_cache_transfer_latency=0.002,
                     kv_cache_transfer_time_per_token=0.0001)
    m = StepTimingModel(p, max_num_seqs=5, rng=random.Random(0))
    assert m.step_time(0, 0, 1) == pytest.approx(0.005)
    assert m.step_time(100, 1, 0) == pytest.approx(0.11)
    # 5 running = max_num_seqs: the full factor 3; 3 running: 1 + 2 * 2/4 = 2.
    assert m.step_time(100, 1, 4) == pytest.approx((0.11 + 0.005) * 3)
    assert m.step_time(0, 0, 3) == pytest.approx(0.005 * 2)
    assert m.transfer_time(1000) == pytest.approx(0.102)


def test_load_can_leave_the_prefill_part_alone() -> None:
    p = TimingParams(prefill_overhead=0.01, prefill_time_per_token=0.001, inter_token_latency=0.005,
                     time_factor_under_load=3.0, prefill_under_load=False)
    m = StepTimingModel(p, max_num_seqs=5, rng=random.Random(0))
    assert m.step_time(100, 1, 4) == pytest.approx(0.11 + 0.005 * 3)  # only the decode part is slowed
    assert m.step_time(100, 5, 0) == pytest.approx(0.11)
    assert m.step_time(0, 0, 3) == pytest.approx(0.005 * 2)


def test_time_to_first_token_overrides_the_prefill_formula() -> None:
    m = StepTimingModel(TimingParams(time_to_first_token=0.2, prefill_time_per_token=1.0), 4, random.Random(0))
    assert m.step_time(5000, 2, 0) == pytest.approx(0.2)


def test_jitter_is_bounded_and_seeded() -> None:
    p = TimingParams(inter_token_latency=0.01, jitter=0.1)
    a = [StepTimingModel(p, 4, random.Random(7)).step_time(0, 0, 1) for _ in range(3)]
    b = [StepTimingModel(p, 4, random.Random(7)).step_time(0, 0, 1) for _ in range(3)]
    assert a == b
    assert all(0.009 <= t <= 0.011 for t in a)


def test_profiles_exist_and_unknown_names_fail_loudly() -> None:
    assert {"tiny", "llama-8b-h100", "qwen-32b-2xh100"} <= set(PROFILES)
    assert get_profile("qwen-32b-2xh100").inter_token_latency > get_profile("llama-8b-h100").inter_token_latency
    with pytest.raises(KeyError, match="known"):
        get_profile("nope")
