"""Named timing profiles: what one simulated engine costs per step, calibrated on published measurements.

A profile is a ``TimingParams`` (see ``timing.py`` for the formulas). Durations are SIMULATED seconds; the engine
multiplies every one by ``--time-scale`` before waiting. Sources are cited per figure; they are ballpark numbers
from public posts, good enough for routing studies (who wins, by how much), not for capacity planning.

- ``tiny``: microseconds everywhere, for tests.
- ``llama-8b-h100``: Llama-3.1-8B (bf16) on one H100-80GB, vLLM.
- ``qwen-32b-2xh100``: Qwen2.5-32B (bf16) on two H100-80GB with tensor parallelism 2, vLLM.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TimingParams(BaseModel):
    """Parameters of ``StepTimingModel`` (all durations in simulated seconds)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    prefill_overhead: float = Field(default=0.0, ge=0)
    """Fixed cost of a step that runs any prefill (kernel launches, scheduling, sampling)."""
    prefill_time_per_token: float = Field(default=0.0, ge=0)
    """Cost per UNCACHED prompt token computed in a step (1 / prefill throughput)."""
    time_to_first_token: float = Field(default=0.0, ge=0)
    """If > 0, a step with prefill costs exactly this for its prefill part (llm-d-inference-sim semantics)."""
    inter_token_latency: float = Field(default=0.0, ge=0)
    """Decode step time with a batch of one (memory-bound weight read)."""
    time_factor_under_load: float = Field(default=1.0, ge=1.0)
    """Step time multiplier at ``max_num_seqs`` running requests; linear in between (1 = no slowdown)."""
    prefill_under_load: bool = True
    """Whether that multiplier also scales a step's prefill part (llm-d-inference-sim scales TTFT by it), or only
    its decode part (a GPU's prefill compute per token hardly depends on the decode batch beside it)."""
    kv_cache_transfer_latency: float = Field(default=0.0, ge=0)
    """P/D: fixed cost of pulling a request's KV blocks from the prefill engine."""
    kv_cache_transfer_time_per_token: float = Field(default=0.0, ge=0)
    """P/D: cost per transferred token."""
    jitter: float = Field(default=0.0, ge=0, le=0.5)
    """Each step time is multiplied by ``1 + U(-jitter, +jitter)`` drawn from the engine's seeded RNG."""


PROFILES: dict[str, TimingParams] = {
    "tiny": TimingParams(
        prefill_overhead=1e-4,
        prefill_time_per_token=1e-6,
        inter_token_latency=1e-4,
        time_factor_under_load=1.5,
        kv_cache_transfer_latency=1e-4,
        kv_cache_transfer_time_per_token=1e-7,
    ),
    "llama-8b-h100": TimingParams(
        # ~10 ms fixed per prefill step: vLLM's TTFT floor for short prompts on H100 (Anyscale/vLLM v0.6
        # performance update, Sept 2024: Llama-3-8B TTFT ~ 15-25 ms at low load for ~500-token prompts).
        prefill_overhead=0.010,
        # Prefill throughput ~ 20,000 tokens/s for 8B bf16 on one H100 (NVIDIA NIM Llama-3.1-8B benchmarks and
        # Databricks "LLM inference performance engineering": prefill is compute-bound, ~2·8e9 FLOP/token against
        # ~400 TFLOP/s effective -> ~5e-5 s/token).
        prefill_time_per_token=5e-5,
        # ITL ~ 7 ms at batch 1 (vLLM v0.6 blog: Llama-3-8B on H100 TPOT ~ 6-8 ms; 16 GB of weights at 3.35 TB/s
        # is 4.8 ms as a floor).
        inter_token_latency=0.007,
        # ITL grows to ~ 2x at batch 256 (vLLM v0.6 blog: TPOT ~ 12-15 ms at high request rates).
        time_factor_under_load=2.0,
        # NIXL over 400 Gb/s RDMA: ~ 2 ms setup (llm-d v0.2 P/D notes); KV of Llama-3-8B is 128 KiB/token
        # (32 layers x 8 KV heads x 128 dim x 2 x 2 bytes) -> 128 KiB / 50 GB/s ~ 2.6 us/token.
        kv_cache_transfer_latency=0.002,
        kv_cache_transfer_time_per_token=2.6e-6,
        jitter=0.05,
    ),
    "qwen-32b-2xh100": TimingParams(
        # ~ 20 ms fixed prefill step cost with TP=2 (extra all-reduce per layer; vLLM TP benchmarks).
        prefill_overhead=0.020,
        # Prefill ~ 7,500 tokens/s for a 32B bf16 model on 2 x H100 (2·32e9 FLOP/token against ~ 2 x 250 TFLOP/s
        # effective; llm-d v0.2 benchmark reports ~ 7-9k prompt tokens/s per TP2 Qwen-32B pod).
        prefill_time_per_token=1.33e-4,
        # ITL ~ 18 ms at batch 1 (64 GB of weights split over two 3.35 TB/s HBM3 -> 9.6 ms floor, plus
        # all-reduce; Qwen2.5-32B vLLM user reports 15-22 ms TPOT on 2 x H100).
        inter_token_latency=0.018,
        time_factor_under_load=2.5,
        # KV of Qwen2.5-32B is 256 KiB/token (64 layers x 8 KV heads x 128 dim x 2 x 2 bytes) over ~ 50 GB/s.
        kv_cache_transfer_latency=0.003,
        kv_cache_transfer_time_per_token=5.2e-6,
        jitter=0.05,
    ),
}


def get_profile(name: str) -> TimingParams:
    """The named profile; unknown names raise ``KeyError`` listing the known ones (no silent fallback)."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None
