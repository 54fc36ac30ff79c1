"""How many requests/s ONE simulator process sustains (8 engines, short prompts, time-scale 0).

The simulator runs as a subprocess (``kserve-llmd sim --engines 8 --time-scale 0 --port 0 --ready-file ...``);
this process is the client: aiohttp, ``--concurrency`` workers spread round-robin over the engines, each sending
``/v1/completions`` back to back for ``--duration`` seconds after a warm-up. Writes
``benchmarks/results/sim_overhead.json`` and ``.md`` (with the command line).

    python benchmarks/sim_overhead.py [--engines 8] [--concurrency 256] [--duration 10] [--max-tokens 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def start_sim(args: argparse.Namespace, ready: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "kserve_llmd", "--log-level", "WARNING", "sim", "--port", "0",
           "--engines", str(args.engines), "--time-scale", "0", "--ready-file", str(ready)]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("simulator did not start")
        time.sleep(0.05)
    return proc


async def drive(urls: list[str], args: argparse.Namespace) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    counting = False
    stop = False
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(i: int) -> None:
            nonlocal errors
            url = urls[i % len(urls)] + "/v1/completions"
            n = 0
            while not stop:
                body = {"model": "sim-model", "prompt": f"user {i} asks question number {n} about the weather today",
                        "max_tokens": args.max_tokens}
                n += 1
                t0 = time.perf_counter()
                async with session.post(url, json=body) as resp:
                    await resp.read()
                    ok = resp.status == 200
                if counting:
                    if ok:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        errors += 1

        tasks = [asyncio.create_task(worker(i)) for i in range(args.concurrency)]
        await asyncio.sleep(args.warmup)
        counting = True
        t0 = time.perf_counter()
        await asyncio.sleep(args.duration)
        counting = False
        elapsed = time.perf_counter() - t0
        stop = True
        await asyncio.gather(*tasks)
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else 0.0,
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2) if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        proc = start_sim(args, ready)
        try:
            urls = [e["url"] for e in json.loads(ready.read_text())["engines"]]
            try:
                import uvloop

                result = uvloop.run(drive(urls, args))
            except ImportError:
                result = asyncio.run(drive(urls, args))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    report = {
        "benchmark": "sim_overhead",
        "command": "python benchmarks/sim_overhead.py " + " ".join(sys.argv[1:]),
        "engines": args.engines, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
        "prompt_tokens": 11, "time_scale": 0, "cpus": os.cpu_count(), "python": platform.python_version(),
        "target_requests_per_second": 1500, **result,
    }
    print(json.dumps(report, indent=2))
    if args.no_write:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sim_overhead.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "sim_overhead.md").write_text(
        "# Simulator overhead\n\n"
        f"Command: `{report['command']}`\n\n"
        f"One simulator process, {args.engines} engines, time-scale 0, prompts of 11 tokens, max_tokens "
        f"{args.max_tokens}; client in a separate process (aiohttp, {args.concurrency} concurrent workers).\n\n"
        "| requests/s | p50 ms | p99 ms | requests | errors | target |\n|---|---|---|---|---|---|\n"
        f"| {report['requests_per_second']} | {report['latency_p50_ms']} | {report['latency_p99_ms']} | "
        f"{report['requests']} | {report['errors']} | ≥ 1500 |\n\n"
        f"Machine: {os.cpu_count()} CPUs shared with other work; Python {platform.python_version()}.\n")


if __name__ == "__main__":
    main()
