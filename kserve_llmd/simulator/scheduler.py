"""Continuous-batching scheduler of one engine (synchronous, no I/O), after vLLM v1's unified scheduler.

Per step, with a token budget of ``max_num_batched_tokens``:

1. RUNNING requests first, oldest first: each needs ``num_tokens - num_computed_tokens`` tokens (1 when decoding,
   the rest of the prompt when a prefill was chunked). If their slots cannot be allocated, the NEWEST running
   request is preempted (blocks freed, ``num_computed_tokens = 0``, back to the FRONT of the waiting queue) and the
   allocation retried; a request may end up preempting itself.
2. If nothing was preempted, WAITING requests are admitted in FIFO order while fewer than ``max_num_seqs`` run
   and budget remains: prefix-cache hits first (``KVCacheManager.computed_blocks``), then tokens pulled from a P/D
   prefill engine (``external_tokens``, no compute cost), then the rest is scheduled, chunked to the budget.
3. ``complete(plan)`` (after the step's simulated time) advances ``num_computed_tokens``; a request whose computed
   count reaches ``num_tokens`` samples one token; finish checks: ``max_tokens``/``max_model_len`` → ``length``,
   stop token or stop string (after ``min_tokens``) → ``stop``.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from kserve_llmd.simulator.kv_manager import KVCacheManager
from kserve_llmd.simulator.request import SimRequest, Status


@dataclass(slots=True)
class StepPlan:
    scheduled: list[tuple[SimRequest, int]] = field(default_factory=list)
    prefill_tokens: int = 0
    prefill_requests: int = 0
    decode_requests: int = 0
    preempted: int = 0


@dataclass(slots=True)
class Admission:
    """What admitting one request found (for the prefix-cache metrics)."""

    query_tokens: int
    hit_tokens: int


class Scheduler:
    def __init__(self, kv: KVCacheManager, *, max_num_seqs: int, max_num_batched_tokens: int,
                 max_model_len: int, sample: Callable[[SimRequest], int],
                 stop_string: Callable[[SimRequest], str | None] | None = None) -> None:
        self.kv = kv
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_model_len = max_model_len
        self._sample = sample
        self._stop_string = stop_string
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        self.admissions: list[Admission] = []  # drained by the engine each step
        self.num_preemptions = 0

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, req: SimRequest) -> None:
        req.status = Status.WAITING
        self.waiting.append(req)

    def abort(self, req: SimRequest) -> None:
        """Drop a request wherever it is and free its blocks (client went away)."""
        if req.status is Status.WAITING:
            with contextlib.suppress(ValueError):
                self.waiting.remove(req)
        elif req.status is Status.RUNNING:
            self.running.remove(req)
        self.kv.free(req)
        req.status = Status.ABORTED

    def _preempt(self, victim: SimRequest) -> None:
        self.kv.free(victim)
        victim.num_computed_tokens = 0
        victim.external_tokens = 0  # pulled KV is gone with the blocks: recompute it
        victim.num_preemptions += 1
        victim.status = Status.WAITING
        self.waiting.appendleft(victim)
        self.num_preemptions += 1

    def schedule(self, now: float) -> StepPlan:
        plan = StepPlan()
        budget = self.max_num_batched_tokens
        kv = self.kv
        running = self.running
        i = 0
        while i < len(running) and budget > 0:
            req = running[i]
            n = min(req.num_tokens - req.num_computed_tokens, budget)
            while not kv.allocate_slots(req, n):
                victim = running.pop()
                self._preempt(victim)
                plan.preempted += 1
                if victim is req:
                    break
            else:
                self._add_to_plan(plan, req, n)
                budget -= n
                i += 1
        if plan.preempted:
            return plan
        waiting = self.waiting
        while waiting and len(running) < self.max_num_seqs and budget > 0:
            req = waiting[0]
            hits, hit_tokens = kv.computed_blocks(req)
            external = max(0, min(req.external_tokens, req.num_tokens - 1) - hit_tokens)
            n = min(req.num_tokens - hit_tokens - external, budget)
            if not kv.allocate_slots(req, external + n, hits):
                break
            waiting.popleft()
            req.num_computed_tokens = hit_tokens + external
            if req.num_cached_tokens < 0:
                req.num_cached_tokens = hit_tokens + external
                self.admissions.append(Admission(req.num_tokens, hit_tokens))
            if req.first_scheduled is None:
                req.first_scheduled = now
            req.status = Status.RUNNING
            running.append(req)
            self._add_to_plan(plan, req, n)
            budget -= n
        return plan

    @staticmethod
    def _add_to_plan(plan: StepPlan, req: SimRequest, n: int) -> None:
        plan.scheduled.append((req, n))
        if req.num_computed_tokens < req.num_prompt_tokens or req.num_computed_tokens + n < req.num_tokens:
            plan.prefill_tokens += n
            plan.prefill_requests += 1
        else:
            plan.decode_requests += 1

    def complete(self, plan: StepPlan, now: float) -> tuple[list[SimRequest], list[SimRequest]]:
        """Apply a step: returns (requests that got a token, requests that finished). Finished requests are out
        of ``running``; their blocks are freed unless they are P/D prefills finished by length (the engine leases
        those with ``kv.take_blocks``)."""
        sampled: list[SimRequest] = []
        finished: list[SimRequest] = []
        for req, n in plan.scheduled:
            if req.status is not Status.RUNNING:  # aborted or preempted during the step
                continue
            req.num_computed_tokens += n
            if req.num_computed_tokens < req.num_tokens:
                continue
            token = self._sample(req)
            req.token_ids.append(token)
            req.output_token_ids.append(token)
            sampled.append(req)
            reason = self._finish_reason(req, token)
            if reason is not None:
                req.finish_reason = reason
                req.status = Status.FINISHED
                finished.append(req)
        if finished:
            done = set(finished)
            self.running = [r for r in self.running if r not in done]
            for req in finished:
                if not (req.do_remote_decode and req.finish_reason == "length"):
                    self.kv.free(req)
        return sampled, finished

    def _finish_reason(self, req: SimRequest, token: int) -> str | None:
        sp = req.sampling
        n_out = len(req.output_token_ids)
        if n_out >= sp.min_tokens:
            if token in sp.stop_token_ids:
                req.stop_reason = token
                return "stop"
            if sp.stop and self._stop_string is not None:
                matched = self._stop_string(req)
                if matched is not None:
                    req.stop_reason = matched
                    return "stop"
        if n_out >= sp.max_tokens or req.num_tokens >= self.max_model_len:
            return "length"
        return None

    def fail_unfittable(self) -> SimRequest | None:
        """When nothing runs and the head of the queue still cannot get blocks, it never will: pop it."""
        if self.running or not self.waiting:
            return None
        return self.waiting.popleft()
