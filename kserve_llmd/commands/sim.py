"""`kserve-llmd sim`: N simulated vLLM engines (OpenAI API, KV events, metrics) in one process.

Timing overrides use llm-d-inference-sim's names and units (MILLISECONDS); they replace single fields of the
chosen ``--profile``. Everything heavy is imported inside ``run``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = "Run N simulated vLLM engines (OpenAI API, KV events, metrics) in one process."

# llm-d-inference-sim flag → TimingParams field (values in ms on the command line, seconds in TimingParams).
TIMING_FLAGS = {
    "time_to_first_token": "time_to_first_token",
    "inter_token_latency": "inter_token_latency",
    "prefill_overhead": "prefill_overhead",
    "prefill_time_per_token": "prefill_time_per_token",
    "kv_cache_transfer_latency": "kv_cache_transfer_latency",
    "kv_cache_transfer_time_per_token": "kv_cache_transfer_time_per_token",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kserve_llmd.simulator.config import FAILURE_TYPES  # light: pydantic models only

    a = parser.add_argument
    a("--port", type=int, default=8000, help="HTTP port of engine 0; engine i listens on PORT+i (0: ephemeral)")
    a("--host", default="127.0.0.1")
    a("--engines", type=int, default=1)
    a("--model", default="sim-model")
    a("--role", choices=["both", "prefill", "decode"], default="both")
    a("--block-size", type=int, default=16)
    a("--kv-cache-size", type=int, default=1024, help="KV-cache capacity in blocks")
    a("--max-num-seqs", type=int, default=256)
    a("--max-num-batched-tokens", type=int, default=8192)
    a("--max-model-len", type=int, default=16384)
    a("--no-prefix-caching", action="store_true", help="disable prefix caching (no hits, no BlockStored)")
    a("--zmq-endpoint", default="tcp://127.0.0.1:*", help="KV-event PUB of engine 0; engine i uses port+i")
    a("--replay-endpoint", default=None,
      help="KV-event replay ROUTER of engine 0; engine i uses port+i (default: ephemeral, on --zmq-endpoint's host)")
    a("--replay-buffer-steps", type=int, default=10000)
    a("--kv-events-topic", default="kv@{host}:{port}@{model}")
    a("--event-encoding", choices=["map", "positional"], default="map")
    a("--time-scale", type=float, default=1.0, help="multiply every simulated duration (0: never wait)")
    a("--profile", default="tiny", help="timing profile: tiny, llama-8b-h100, qwen-32b-2xh100")
    for flag in TIMING_FLAGS:
        a("--" + flag.replace("_", "-"), type=float, default=None, help="milliseconds (overrides the profile)")
    a("--time-factor-under-load", type=float, default=None, help=">= 1; step slowdown at max-num-seqs")
    a("--prefill-under-load", action=argparse.BooleanOptionalAction, default=None,
      help="whether that slowdown also scales a step's prefill part (default: the profile's, yes)")
    a("--seed", type=int, default=0)
    a("--tokenizer", default=None, help="path to a tokenizer.json (default: the built-in tokenizer)")
    a("--failure-injection-rate", type=float, default=0.0, help="0..1 (llm-d-inference-sim accepts 0..100 %%)")
    a("--failure-types", nargs="+", choices=FAILURE_TYPES, default=list(FAILURE_TYPES))
    a("--kv-lease-seconds", type=float, default=30.0, help="P/D: how long a prefill holds blocks")
    a("--kv-load-failure-policy", choices=["fail", "recompute"], default="fail")
    a("--default-max-tokens", type=int, default=None)
    a("--ready-file", default=None, help="write the engines' addresses as JSON here once every listener is up")


def build_config(args: argparse.Namespace) -> Any:
    """``SimConfig`` from parsed arguments (strict; raises pydantic's ``ValidationError`` naming the field)."""
    from kserve_llmd.simulator.config import SimConfig
    from kserve_llmd.simulator.profiles import get_profile

    timing = None
    overrides: dict[str, float | bool] = {}
    for flag, field in TIMING_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[field] = value / 1000.0
    if args.time_factor_under_load is not None:
        overrides["time_factor_under_load"] = args.time_factor_under_load
    if args.prefill_under_load is not None:
        overrides["prefill_under_load"] = args.prefill_under_load
    if overrides:
        base = get_profile(args.profile)
        timing = type(base).model_validate({**base.model_dump(), **overrides})
    rate = args.failure_injection_rate
    return SimConfig(
        host=args.host, port=args.port, engines=args.engines, model=args.model, role=args.role,
        block_size=args.block_size, kv_cache_size=args.kv_cache_size, max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens, max_model_len=args.max_model_len,
        enable_prefix_caching=not args.no_prefix_caching, zmq_endpoint=args.zmq_endpoint,
        replay_endpoint=args.replay_endpoint,
        replay_buffer_steps=args.replay_buffer_steps, kv_events_topic=args.kv_events_topic,
        event_encoding=args.event_encoding, time_scale=args.time_scale, profile=args.profile, timing=timing,
        seed=args.seed, tokenizer=args.tokenizer, failure_injection_rate=rate / 100.0 if rate > 1 else rate,
        failure_types=tuple(args.failure_types), kv_lease_seconds=args.kv_lease_seconds,
        kv_load_failure_policy=args.kv_load_failure_policy, default_max_tokens=args.default_max_tokens,
    )


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from pydantic import ValidationError

    try:
        config = build_config(args)
    except (ValidationError, KeyError) as exc:
        print(f"kserve-llmd sim: invalid configuration: {exc}", file=sys.stderr)
        return 2
    logging.getLogger(__name__).info("effective configuration: %s", config.model_dump_json())
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is optional
        runner = asyncio.run
    result: int = runner(_serve(config, args.ready_file))
    return result


async def _serve(config: Any, ready_file: str | None) -> int:
    import asyncio
    import signal

    import orjson

    from kserve_llmd.simulator.cluster import SimCluster

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with SimCluster(config) as cluster:
        for info in cluster.engines:
            print(f"engine {info.url} kv-events {info.kv_events} replay {info.replay} role {info.role}",
                  file=sys.stderr, flush=True)
        if ready_file:
            _write_atomic(ready_file, orjson.dumps(cluster.ready_json()))
        await stop.wait()
    return 0


def _write_atomic(path: str, data: bytes) -> None:
    """Write tmp + rename, so a reader never sees a partial file (CONTRACTS.md)."""
    import os
    from pathlib import Path

    tmp = Path(f"{path}.tmp.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
