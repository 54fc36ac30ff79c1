"""The latency model: a small swappable strategy that prices one engine step (continuous batching).

``StepTimingModel`` (the default), with ``p = TimingParams`` and ``n`` requests in the step's batch::

    load(n)      = 1 + (p.time_factor_under_load - 1) * (n - 1) / (max_num_seqs - 1)      (1 when max_num_seqs == 1)
    prefill(T)   = p.time_to_first_token                       if p.time_to_first_token > 0
                 = p.prefill_overhead + p.prefill_time_per_token * T                       otherwise
                   (T = UNCACHED prompt tokens computed in this step, summed over its requests; 0 if none)
    decode       = p.inter_token_latency                        if any request in the step is decoding, else 0
    step(T, n)   = (prefill(T) + decode) * load(n) * (1 + U(-p.jitter, p.jitter))      p.prefill_under_load (default)
                 = (prefill(T) + decode * load(n)) * (1 + U(-p.jitter, p.jitter))      otherwise
    transfer(K)  = p.kv_cache_transfer_latency + p.kv_cache_transfer_time_per_token * K     (P/D pull of K tokens)

All results are SIMULATED seconds; the engine multiplies them by ``time_scale``. ``load`` follows
llm-d-inference-sim's ``--time-factor-under-load`` (the factor is reached at ``max_num_seqs`` running requests).
"""

from __future__ import annotations

import random
from typing import Protocol

from kserve_llmd.simulator.profiles import TimingParams


class TimingModel(Protocol):
    """Prices engine steps and KV transfers in simulated seconds."""

    def step_time(self, prefill_tokens: int, prefill_requests: int, decode_requests: int) -> float: ...

    def transfer_time(self, tokens: int) -> float: ...


class StepTimingModel:
    """The default ``TimingModel`` (formulas in the module docstring)."""

    def __init__(self, params: TimingParams, max_num_seqs: int, rng: random.Random) -> None:
        self._p = params
        self._max = max_num_seqs
        self._rng = rng

    def load_factor(self, batch: int) -> float:
        if self._max <= 1 or batch <= 1:
            return 1.0
        return 1.0 + (self._p.time_factor_under_load - 1.0) * (min(batch, self._max) - 1) / (self._max - 1)

    def step_time(self, prefill_tokens: int, prefill_requests: int, decode_requests: int) -> float:
        p = self._p
        prefill = 0.0
        if prefill_requests:
            if p.time_to_first_token > 0:
                prefill = p.time_to_first_token
            else:
                prefill = p.prefill_overhead + p.prefill_time_per_token * prefill_tokens
        decode = p.inter_token_latency if decode_requests else 0.0
        load = self.load_factor(prefill_requests + decode_requests)
        t = (prefill + decode) * load if p.prefill_under_load else prefill + decode * load
        if p.jitter and t:
            t *= 1.0 + self._rng.uniform(-p.jitter, p.jitter)
        return t

    def transfer_time(self, tokens: int) -> float:
        return self._p.kv_cache_transfer_latency + self._p.kv_cache_transfer_time_per_token * max(tokens, 0)
