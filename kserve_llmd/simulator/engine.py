"""One simulated engine: scheduler + KV cache + event publisher + metrics + P/D leases, driven by a step loop.

Data flow::

    HTTP handler ──SimRequest──▶ submit ──▶ Scheduler.waiting ─┐
                                                             ▼
    step loop: schedule ─▶ sleep(step_time × time_scale) ─▶ complete ─▶ publish the step's KV events
                                                             │
              sampled tokens ─▶ req.changed (streams)  ◀─────┤
              finished       ─▶ metrics, lease (P/D prefill) or free, req.done

The loop sleeps on an ``asyncio.Event`` when there is nothing to do, so idle engines cost nothing; at
``time_scale == 0`` it yields once per step (``sleep(0)``), which is what lets concurrent arrivals batch.
``start()`` launches the loop and binds the ZMQ sockets; ``aclose()`` stops both.

KV events are published once per step, AFTER the step, before its tokens reach the streams, as vLLM 0.32's
``Scheduler.update_from_output`` does: the blocks a step stored are announced when its forward pass is done, so a
router learns of a prompt's blocks about when its first token leaves (older vLLM published at the end of
``schedule()``, one step earlier). A schedule that runs nothing publishes at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import zmq.asyncio

from kserve_llmd.aio import stop_tasks
from kserve_llmd.errors import KserveLlmdError
from kserve_llmd.simulator.block_pool import Block, BlockPool
from kserve_llmd.simulator.config import SimConfig
from kserve_llmd.simulator.hashing import none_hash
from kserve_llmd.simulator.kv_manager import KVCacheManager
from kserve_llmd.simulator.leases import Lease, LeaseTable
from kserve_llmd.simulator.metrics import EngineMetrics
from kserve_llmd.simulator.publisher import KVEventPublisher
from kserve_llmd.simulator.request import SimRequest, Status
from kserve_llmd.simulator.scheduler import Scheduler
from kserve_llmd.simulator.timing import StepTimingModel, TimingModel
from kserve_llmd.tokenizer import Tokenizer
from kserve_llmd.types import Clock

log = logging.getLogger(__name__)

HASH_ALGO = "sim_blake2b_64"


class SimEngine:
    def __init__(self, config: SimConfig, index: int, tokenizer: Tokenizer, zmq_ctx: zmq.asyncio.Context, *,
                 clock: Clock = time.monotonic, rng: random.Random | None = None,
                 timing: TimingModel | None = None) -> None:
        self.config = config
        self.index = index
        self.engine_id = f"sim-{config.seed}-{index}"
        self.tokenizer = tokenizer
        self.clock = clock
        master = rng if rng is not None else random.Random(config.seed * 1_000_003 + index)
        self.token_rng = random.Random(master.getrandbits(64))
        self.failure_rng = random.Random(master.getrandbits(64))
        self.timing: TimingModel = timing or StepTimingModel(
            config.resolved_timing(), config.max_num_seqs, random.Random(master.getrandbits(64)))
        self.vocab_size = int(getattr(tokenizer, "vocab_size", 32000))
        self.pool = BlockPool(config.kv_cache_size, config.block_size, config.enable_prefix_caching)
        self.kv = KVCacheManager(self.pool, none_hash(config.seed, index))
        self.scheduler = Scheduler(
            self.kv, max_num_seqs=config.max_num_seqs, max_num_batched_tokens=config.max_num_batched_tokens,
            max_model_len=config.max_model_len, sample=self._sample, stop_string=self._stop_string)
        self.leases = LeaseTable(self._release_lease, config.lease_wall_seconds())
        self.publisher = KVEventPublisher(zmq_ctx, config.zmq_bind(index), config.replay_bind(index),
                                          encoding=config.event_encoding, buffer_steps=config.replay_buffer_steps)
        self.metrics = EngineMetrics(
            config.model, str(index),
            running=lambda: float(len(self.scheduler.running)),
            waiting=lambda: float(len(self.scheduler.waiting)),
            kv_usage=self.pool.usage,
            cache_info={
                "block_size": str(config.block_size), "num_gpu_blocks": str(config.kv_cache_size),
                "enable_prefix_caching": str(config.enable_prefix_caching), "prefix_caching_hash_algo": HASH_ALGO,
                "cache_dtype": "auto", "num_cpu_blocks": "None",
            })
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._scale = config.time_scale
        self.url = ""
        self.port = 0
        self.steps = 0
        self._serial = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.publisher.start()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"sim-engine-{self.index}")

    async def aclose(self) -> None:
        await stop_tasks(self._task)
        self._task = None
        self.leases.close()
        for req in [*self.scheduler.waiting, *self.scheduler.running]:
            self._fail(req, KserveLlmdError("engine shut down"))
        await self.publisher.aclose()

    # ------------------------------------------------------------------ requests
    def submit(self, req: SimRequest) -> None:
        req.done = asyncio.get_running_loop().create_future()
        if req.stream:
            req.changed = asyncio.Event()
        self.scheduler.add(req)
        self._wake.set()

    def abort(self, req: SimRequest) -> None:
        """The client went away: drop the request, free its blocks, count it as ``abort``."""
        if req.finished:
            return
        self.scheduler.abort(req)
        req.finish_reason = "abort"
        req.finished_time = self.clock()
        self.metrics.observe_finished(req)
        self._wake.set()

    async def sleep(self, simulated_seconds: float) -> None:
        """Wait a simulated duration (× time-scale; nothing at all at time-scale 0)."""
        if simulated_seconds > 0 and self._scale > 0:
            await asyncio.sleep(simulated_seconds * self._scale)

    def reset_prefix_cache(self) -> bool:
        ok = self.pool.reset()
        self._publish()
        return ok

    # ------------------------------------------------------------------ P/D
    def lease(self, req: SimRequest) -> Lease:
        self._serial += 1
        transfer_id = req.request_id if req.request_id not in self.leases else f"{req.request_id}-{self._serial}"
        lease = Lease(transfer_id=transfer_id, request_id=req.request_id, blocks=self.kv.take_blocks(req),
                      token_ids=list(req.prompt_token_ids))
        self.leases.add(lease)
        return lease

    def _release_lease(self, blocks: list[Block]) -> None:
        self.kv.free_detached(blocks)
        self._wake.set()

    def local_hit_tokens(self, req: SimRequest) -> int:
        return self.kv.computed_blocks(req)[1]

    # ------------------------------------------------------------------ the step loop
    def _sample(self, req: SimRequest) -> int:
        return self.token_rng.randrange(self.vocab_size)

    def _stop_string(self, req: SimRequest) -> str | None:
        text = self.tokenizer.decode(req.output_token_ids)
        for stop in req.sampling.stop:
            if stop in text:
                return stop
        return None

    def _publish(self) -> None:
        events = self.pool.drain_events()
        if events:
            self.publisher.publish(events)

    async def _loop(self) -> None:
        sched = self.scheduler
        wake = self._wake
        while True:
            if not sched.has_work():
                wake.clear()
                await wake.wait()
                continue
            plan = sched.schedule(self.clock())
            self._observe_admissions()
            if plan.preempted:
                self.metrics.preemptions.inc(plan.preempted)
            if not plan.scheduled:
                self._publish()
                if plan.preempted:
                    continue
                stuck = sched.fail_unfittable() if not len(self.leases) else None
                if stuck is not None:
                    self._fail(stuck, KserveLlmdError(
                        f"request needs more KV blocks than the engine has ({self.config.kv_cache_size})"))
                    continue
                wake.clear()
                await wake.wait()
                continue
            self.steps += 1
            dt = self.timing.step_time(plan.prefill_tokens, plan.prefill_requests, plan.decode_requests)
            if dt > 0 and self._scale > 0:
                await asyncio.sleep(dt * self._scale)
            else:
                await asyncio.sleep(0)
            now = self.clock()
            sampled, finished = sched.complete(plan, now)
            self._publish()
            itl = self.metrics.itl
            for req in sampled:
                if req.first_token_time is None:
                    req.first_token_time = now
                    self.metrics.ttft.observe(now - req.arrival)
                elif req.last_token_time is not None:
                    itl.observe(now - req.last_token_time)
                req.last_token_time = now
                if req.changed is not None:
                    req.changed.set()
            for req in finished:
                self._finish(req, now)

    def _observe_admissions(self) -> None:
        admissions = self.scheduler.admissions
        if admissions:
            for a in admissions:
                self.metrics.observe_admitted(a.query_tokens, a.hit_tokens)
            admissions.clear()

    def _finish(self, req: SimRequest, now: float) -> None:
        req.finished_time = now
        if req.do_remote_decode and req.finish_reason == "length":
            lease = self.lease(req)
            req.leased = (lease.transfer_id, [b.block_id for b in lease.blocks])
        self.metrics.observe_finished(req)
        if req.changed is not None:
            req.changed.set()
        if req.done is not None and not req.done.done():
            req.done.set_result(None)

    def _fail(self, req: SimRequest, exc: BaseException) -> None:
        self.kv.free(req)
        req.error = exc
        req.status = Status.FINISHED
        req.finish_reason = "error"
        req.finished_time = self.clock()
        self.metrics.observe_finished(req)
        if req.changed is not None:
            req.changed.set()
        if req.done is not None and not req.done.done():
            req.done.set_result(None)
