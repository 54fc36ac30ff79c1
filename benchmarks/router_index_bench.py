"""Benchmarks of the router's precise prefix index (a script, not a test).

    python benchmarks/router_index_bench.py [--blocks 1000000] [--endpoints 64] [--prompt-tokens 8192]

Writes benchmarks/results/router_index.json and .md:
(a) decision-side latency for one prompt against a full index: hashing + match p50/p99 (tokenization separately,
    built-in and a tiny BPE ``tokenizer.json`` trained here with ``tokenizers``);
(b) KV-event ingestion throughput: decode+apply alone, and end to end through a real ZMQ PUB (another process)
    → SUB on loopback;
(c) index memory per cached block (tracemalloc, and RSS delta), plus the cost of clearing one endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import msgpack

from kserve_llmd.router.approx import ApproximateMatcher
from kserve_llmd.router.events import KVEventIngester
from kserve_llmd.router.hashing import block_keys, seed_for
from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.kv_apply import EndpointApplier, IngestStats
from kserve_llmd.router.kvindex import LRUKVIndex
from kserve_llmd.router.matcher import PreciseMatcher
from kserve_llmd.tokenizer import BuiltinTokenizer, HFTokenizer
from kserve_llmd.wire.kv_events import decode_batch

RESULTS = Path(__file__).resolve().parent / "results"
BS = 16


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed_us(fn: Any, n: int) -> dict[str, float]:
    """Wall-clock AND this thread's CPU time per call: on a shared machine the wall p99 mostly measures
    preemption by other processes, the CPU-time p99 what the code itself costs."""
    wall, cpu = [], []
    for _ in range(n):
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        fn()
        wall.append((time.perf_counter_ns() - t0) / 1000)
        cpu.append((time.thread_time_ns() - c0) / 1000)
    return {"p50_us": round(pct(wall, 0.5), 1), "p99_us": round(pct(wall, 0.99), 1),
            "mean_us": round(statistics.fmean(wall), 1), "cpu_p50_us": round(pct(cpu, 0.5), 1),
            "cpu_p99_us": round(pct(cpu, 0.99), 1), "n": n}


# ------------------------------------------------------------------------------------------- (a) decision


def fill_index(index: LRUKVIndex, blocks: int, endpoints: int, rng: random.Random) -> None:
    """``blocks`` random chains of 32 blocks spread over the endpoints (about 1 in 8 chains on two endpoints)."""
    added = 0
    while added < blocks:
        chain = [rng.getrandbits(60) for _ in range(32)]
        index.add(f"e{rng.randrange(endpoints)}", chain)
        if rng.random() < 0.125:
            index.add(f"e{rng.randrange(endpoints)}", chain)
        added += 32


def bench_decision(args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    index = LRUKVIndex(capacity=args.blocks + 100_000)
    fill_index(index, args.blocks, args.endpoints, rng)
    tokens = [rng.randrange(32000) for _ in range(args.prompt_tokens)]
    seed = seed_for("bench-model")
    keys = block_keys(tokens, BS, seed)
    # Worst case for the walk: one endpoint holds the whole prompt, others hold prefixes of various lengths.
    index.add("e0", keys)
    for i in range(1, args.endpoints, 4):
        index.add(f"e{i}", keys[: len(keys) * i // args.endpoints])
    names = [f"e{i}" for i in range(args.endpoints)]
    endpoints = [Endpoint(id=n, url=f"http://{n}", models=frozenset({"bench-model"})) for n in names]
    matcher = PreciseMatcher(index, block_size=BS)
    assert index.match(keys, names)["e0"] == len(keys)

    def precise() -> None:
        ctx = RequestContext(request_id="r", model="bench-model", path="/v1/completions", body={}, token_ids=tokens)
        matcher.match(ctx, endpoints)

    n = args.iterations
    out: dict[str, Any] = {
        "indexed_blocks": len(index), "endpoints": args.endpoints, "prompt_tokens": args.prompt_tokens,
        "block_size": BS, "prompt_blocks": len(keys),
        "hash": timed_us(lambda: block_keys(tokens, BS, seed), n),
        "match": timed_us(lambda: index.match(keys, names), n),
        "hash_plus_match": timed_us(lambda: index.match(block_keys(tokens, BS, seed), names), n),
        "precise_matcher_match": timed_us(precise, n),
    }
    builtin = BuiltinTokenizer()
    text = builtin.decode(tokens)
    out["tokenize_builtin"] = timed_us(lambda: builtin.encode(text), max(50, n // 10))
    with tempfile.TemporaryDirectory() as tmp:
        hf_path = train_bpe(Path(tmp), text)
        hf = HFTokenizer(hf_path)
        out["tokenize_hf_bpe"] = timed_us(lambda: hf.encode(text), max(50, n // 10))
        out["tokenize_hf_bpe"]["tokens"] = len(hf.encode(text))
    approx = ApproximateMatcher(chunk_chars=64, capacity=args.blocks)
    first = RequestContext(request_id="r", model="bench-model", path="/v1/completions", body={}, prompt_text=text)
    approx.observe_routed(first, endpoints[0])

    def approximate() -> None:
        ctx = RequestContext(request_id="r", model="bench-model", path="/v1/completions", body={}, prompt_text=text)
        approx.match(ctx, endpoints)

    out["approx_matcher_match"] = timed_us(approximate, n)
    out["approx_matcher_match"]["prompt_chars"] = len(text)
    return out


def train_bpe(folder: Path, text: str) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([text[i:i + 2000] for i in range(0, len(text), 2000)],
                            trainers.BpeTrainer(vocab_size=4000, special_tokens=["[UNK]"]))
    path = folder / "tokenizer.json"
    tok.save(str(path))
    return path


# ------------------------------------------------------------------------------------------- (b) ingestion


def make_batches(n_batches: int, blocks_per_event: int, rng: random.Random) -> list[bytes]:
    """Engine-like steady state: each batch stores a chained run of blocks and evicts an equal older run."""
    out, next_hash, stored = [], 1, []
    parent: int | None = None
    for i in range(n_batches):
        hashes = list(range(next_hash, next_hash + blocks_per_event))
        next_hash += blocks_per_event
        events: list[Any] = [{"type": "BlockStored", "block_hashes": hashes, "parent_block_hash": parent,
                              "token_ids": [rng.randrange(32000) for _ in range(blocks_per_event * BS)],
                              "block_size": BS, "medium": "GPU"}]
        stored.append(hashes)
        parent = None if i % 8 == 7 else hashes[-1]  # prompts of 8 runs, then a new prompt
        if len(stored) > 64:
            events.append({"type": "BlockRemoved", "block_hashes": stored.pop(0), "medium": "GPU"})
        out.append(msgpack.packb([time.time(), events, 0], use_bin_type=True))
    return out


def bench_apply(batches: list[bytes], blocks_per_event: int) -> dict[str, Any]:
    stats = IngestStats()
    applier = EndpointApplier("e0", "bench-model", LRUKVIndex(2_000_000), stats)
    t0 = time.perf_counter()
    for payload in batches:
        applier.apply(decode_batch(payload).events)
    elapsed = time.perf_counter() - t0
    return {"batches": len(batches), "blocks_per_event": blocks_per_event, "blocks_stored": stats.blocks_stored,
            "blocks_removed": stats.blocks_removed, "seconds": round(elapsed, 3),
            "stored_blocks_per_s": round(stats.blocks_stored / elapsed),
            "stored_plus_removed_blocks_per_s": round((stats.blocks_stored + stats.blocks_removed) / elapsed)}


PUBLISHER = r"""
import pickle, sys, time, zmq
batches, empty = pickle.load(sys.stdin.buffer)
ctx = zmq.Context(); pub = ctx.socket(zmq.PUB); pub.setsockopt(zmq.SNDHWM, 0); pub.bind("tcp://127.0.0.1:*")
print(pub.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
seq = 0
with open(sys.argv[1], "rb") as go:
    while not go.read(1):  # warm-up: empty batches until the subscriber is there and says go
        pub.send_multipart([b"kv@bench", seq.to_bytes(8, "big"), empty]); seq += 1; time.sleep(0.01); go.seek(0)
for payload in batches:
    pub.send_multipart([b"kv@bench", seq.to_bytes(8, "big"), payload]); seq += 1
print(seq - 1, flush=True)
sys.stdin.read()  # stay up (PUB would drop undelivered messages on close) until the parent kills us
"""


def start_publisher(batches: list[bytes], go: Path) -> tuple[subprocess.Popen[bytes], str]:
    import pickle

    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(go)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(pickle.dumps((batches, msgpack.packb([0.0, []]))))
    proc.stdin.flush()
    return proc, proc.stdout.readline().decode().strip()


async def bench_zmq(batches: list[bytes]) -> dict[str, Any]:
    """The publisher runs in another process so that this process's one core only ingests."""
    with tempfile.TemporaryDirectory() as tmp:
        go = Path(tmp) / "go"
        go.write_bytes(b"")
        proc, url = start_publisher(batches, go)
        assert proc.stdout is not None
        index = LRUKVIndex(2_000_000)
        ingester = KVEventIngester(index, replay_on_join=False)
        ingester.add_endpoint(Endpoint(id="e0", url="http://e0", models=frozenset({"bench-model"})), url)
        try:
            await ingester.start()
            while ingester.last_seq("e0") is None:  # noqa: ASYNC110 (polling the ingester's progress is the point)
                await asyncio.sleep(0.01)
            go.write_bytes(b"x")
            t0 = time.perf_counter()
            last_line = asyncio.create_task(asyncio.to_thread(proc.stdout.readline))
            while not last_line.done() or ingester.last_seq("e0") != int(last_line.result()):  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            elapsed = time.perf_counter() - t0
            stats = ingester.stats
            return {"batches": len(batches), "blocks_stored": stats.blocks_stored, "seconds": round(elapsed, 3),
                    "stored_blocks_per_s": round(stats.blocks_stored / elapsed),
                    "gaps": stats.gaps, "resets": stats.resets, "decode_errors": stats.decode_errors}
        finally:
            await ingester.aclose()
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------------------- (c) memory


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench_memory(args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    rss0, traced0 = rss_bytes(), tracemalloc.get_traced_memory()[0]
    index = LRUKVIndex(args.blocks + 1)
    seed = seed_for("bench-model")
    added = 0
    keys_only: list[list[int]] = []
    while added < args.blocks:
        tokens = [rng.randrange(32000) for _ in range(32 * BS)]
        keys_only.append(block_keys(tokens, BS, seed))
        index.add(f"e{rng.randrange(args.endpoints)}", keys_only[-1])
        added += 32
    keys_only.clear()
    gc.collect()
    traced1, rss1 = tracemalloc.get_traced_memory()[0], rss_bytes()
    tracemalloc.stop()
    t0 = time.perf_counter()
    index.clear("e0")
    clear_ms = (time.perf_counter() - t0) * 1000
    per_block = (traced1 - traced0) / len(index) if len(index) else 0.0
    return {"blocks": added, "index_bytes_per_block_tracemalloc": round(per_block, 1),
            "rss_delta_bytes_per_block": round((rss1 - rss0) / added, 1),
            "clear_one_endpoint_ms": round(clear_ms, 1),
            "note": "index only (key ints + OrderedDict entries); the event path adds the per-endpoint "
                    "engine-hash map, see index_plus_engine_map_bytes_per_block"}


def bench_event_path_memory(rng: random.Random, n_blocks: int = 200_000) -> tuple[float, int, float]:
    """Bytes per block stored through events on one endpoint: index entry + engine-hash map entry."""
    stats = IngestStats()
    applier = EndpointApplier("e0", "bench-model", LRUKVIndex(n_blocks + 1), stats)
    batches = make_batches(n_blocks // 32, 32, rng)
    decoded = [decode_batch(b).events for b in batches]
    gc.collect()
    tracemalloc.start()
    t0 = tracemalloc.get_traced_memory()[0]
    for events in decoded:
        applier.apply([e for e in events if type(e).__name__ == "BlockStored"])
    total = tracemalloc.get_traced_memory()[0] - t0
    tracemalloc.stop()
    c0 = time.thread_time()
    applier.reset()  # exact hash map: removes only this endpoint's keys
    reset_ms = (time.thread_time() - c0) * 1000
    return round(total / stats.blocks_stored, 1), stats.blocks_stored, round(reset_ms, 1)


# ------------------------------------------------------------------------------------------- report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=1_000_000)
    parser.add_argument("--endpoints", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=8192)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--ingest-batches", type=int, default=8000)
    parser.add_argument("--blocks-per-event", type=int, default=32)
    args = parser.parse_args()
    rng = random.Random(1234)
    result: dict[str, Any] = {
        "command": "python benchmarks/router_index_bench.py " + " ".join(sys.argv[1:]),
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
    }
    load_before = os.getloadavg()[0]
    print("(a) decision-side latency ...", flush=True)
    result["decision"] = bench_decision(args, rng)
    gc.collect()
    print("(b) ingestion ...", flush=True)
    batches = make_batches(args.ingest_batches, args.blocks_per_event, rng)
    result["ingest_decode_apply"] = bench_apply(batches, args.blocks_per_event)
    result["ingest_zmq_end_to_end"] = asyncio.run(bench_zmq(batches))
    del batches
    gc.collect()
    print("(c) memory ...", flush=True)
    result["memory"] = bench_memory(args, rng)
    per_block, n_reset, reset_ms = bench_event_path_memory(rng)
    result["memory"]["index_plus_engine_map_bytes_per_block"] = per_block
    result["memory"]["applier_reset"] = {"blocks": n_reset, "cpu_ms": reset_ms}
    result["loadavg"] = f"{load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    result["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router_index.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "router_index.md").write_text(render_md(result))
    print(render_md(result))
    return 0


def render_md(r: dict[str, Any]) -> str:
    d, a, z, m = r["decision"], r["ingest_decode_apply"], r["ingest_zmq_end_to_end"], r["memory"]
    hm = d["hash_plus_match"]
    lines = [
        "# Router precise prefix index: benchmark", "",
        f"Command: `{r['command']}` (Python {r['python']}, {r['cpus']} CPUs, one process, one core used).", "",
        f"## (a) Decision-side latency: {d['prompt_tokens']}-token prompt ({d['prompt_blocks']} blocks of "
        f"{d['block_size']}), {d['endpoints']} endpoints, {d['indexed_blocks']:,} indexed blocks", "",
        "| step | wall p50 µs | wall p99 µs | wall mean µs | CPU p50 µs | CPU p99 µs |", "|---|---|---|---|---|---|",
    ]
    for name in ("hash", "match", "hash_plus_match", "precise_matcher_match", "approx_matcher_match",
                 "tokenize_builtin", "tokenize_hf_bpe"):
        s = d[name]
        lines.append(f"| {name} | {s['p50_us']} | {s['p99_us']} | {s['mean_us']} | {s['cpu_p50_us']} | "
                     f"{s['cpu_p99_us']} |")
    verdict = "meets" if hm["p99_us"] <= 1000 else "MISSES"
    cpu_verdict = "meets" if hm["cpu_p99_us"] <= 1000 else "MISSES"
    lines += ["", f"Hash + match: wall p99 = {hm['p99_us']} µs ({verdict} the 1 ms target), CPU-time p99 = "
              f"{hm['cpu_p99_us']} µs ({cpu_verdict} it); load average during the run: {r['loadavg']}. "
              "The match walks every block "
              "(one endpoint holds the whole prompt). Tokenization is reported separately (HF: a BPE trained on "
              f"the prompt itself, {d['tokenize_hf_bpe']['tokens']} tokens; approx matcher: "
              f"{d['approx_matcher_match']['prompt_chars']} chars in 64-char chunks).", "",
              "## (b) KV-event ingestion (one core)", "",
              "| path | batches | stored blocks | s | stored blocks/s | notes |", "|---|---|---|---|---|---|",
              f"| decode + apply | {a['batches']} | {a['blocks_stored']:,} | {a['seconds']} | "
              f"{a['stored_blocks_per_s']:,} | +{a['blocks_removed']:,} removed; "
              f"{a['stored_plus_removed_blocks_per_s']:,} stored+removed/s |",
              f"| ZMQ PUB (other process) → SUB → index | {z['batches']} | {z['blocks_stored']:,} | {z['seconds']} | "
              f"{z['stored_blocks_per_s']:,} | gaps {z['gaps']}, resets {z['resets']} |", "",
              f"Each batch: one BlockStored of {a['blocks_per_event']} blocks × {BS} tokens (chained prompts) and, "
              "in steady state, one BlockRemoved of as many older blocks. Target ≥ 100k blocks/s.", "",
              f"## (c) Memory ({m['blocks']:,} blocks over {d['endpoints']} endpoints)", "",
              f"- index: {m['index_bytes_per_block_tracemalloc']} bytes per cached block (tracemalloc), "
              f"RSS delta {m['rss_delta_bytes_per_block']} bytes per block (target ≤ 200);",
              f"- through KV events (index entry + the endpoint's engine-hash → own-key map entry): "
              f"{m['index_plus_engine_map_bytes_per_block']} bytes per block;",
              f"- `index.clear()` of one endpoint at this size: {m['clear_one_endpoint_ms']} ms wall (a full scan; "
              "used only when an endpoint is removed or its hash map is inexact);",
              "- event-path reset of one endpoint (engine restart, AllBlocksCleared, unrecoverable gap) with an "
              f"exact hash map: {m['applier_reset']['cpu_ms']} ms CPU for {m['applier_reset']['blocks']:,} blocks.", "",
              ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
