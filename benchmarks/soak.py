"""Soak: the router in front of 8 simulated engines at a steady rate for a while; nothing may be lost.

Processes: one ``kserve-llmd sim --engines 8`` (realistic ``llama-8b-h100`` timing, KV events on), one
``kserve-llmd router`` (precise-prefix preset, KV-event sources asked from the engines), and this script as an
OPEN-LOOP client: Poisson arrivals at ``--rate`` requests/s for ``--duration`` seconds, a mix of streaming and
non-streaming completions whose prompts share prefixes (16 groups), so the prefix index is exercised.

Every request ends in exactly one bucket:

- answered: HTTP 200 and a complete answer (a JSON body with choices; a stream ending with ``data: [DONE]``),
- failed: anything else that came back (an HTTP error, an in-band stream error, a connection error),
- LOST: sent, but neither answered nor failed ``--drain-timeout`` seconds after the run ended (target: 0).

The router's RSS (``/proc/<pid>/status`` VmRSS) is sampled every 5 s: start (after warm-up), end, max.

    python benchmarks/soak.py [--duration 60] [--rate 40] [--out benchmarks/results/soak]

Writes ``<out>.json`` and ``<out>.md``. A script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODEL = "sim-model"


async def spawn(args: list[str], ready: Path) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "kserve_llmd", "--log-level", "WARNING", *args,
                                                "--ready-file", str(ready), stdout=asyncio.subprocess.DEVNULL)
    while not ready.exists():  # noqa: ASYNC240 - a stat per 50 ms while a child starts
        if proc.returncode is not None:
            raise RuntimeError(f"{args[0]} exited with {proc.returncode}")
        await asyncio.sleep(0.05)
    return proc, json.loads(ready.read_text())  # noqa: ASYNC240 - a few bytes, once


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Soak:
    def __init__(self, url: str, rng: random.Random) -> None:
        self.url = url
        self.rng = rng
        self.sent = 0
        self.answered = 0
        self.failed = 0
        self.failures: dict[str, int] = {}
        self.pending: set[int] = set()
        self.ttft: list[float] = []
        self.e2e: list[float] = []
        systems = [" ".join(f"sys{g}w{i}" for i in range(300)) for g in range(16)]
        self.systems = systems

    def _fail(self, why: str) -> None:
        self.failed += 1
        self.failures[why] = self.failures.get(why, 0) + 1

    async def one(self, session: aiohttp.ClientSession, rid: int) -> None:
        stream = self.rng.random() < 0.7
        prompt = f"{self.rng.choice(self.systems)} question {rid} " + " ".join(
            f"q{self.rng.randrange(1000)}" for _ in range(30))
        body = {"model": MODEL, "prompt": prompt, "max_tokens": self.rng.randrange(8, 64), "stream": stream}
        start = time.perf_counter()
        ttft = None
        try:
            async with session.post(self.url + "/v1/completions", json=body) as resp:
                if resp.status != 200:
                    self._fail(f"http {resp.status}")
                    await resp.read()
                    return
                if stream:
                    buf = bytearray()
                    async for chunk in resp.content.iter_any():
                        if ttft is None:
                            ttft = time.perf_counter() - start
                        buf += chunk
                    events = bytes(buf).strip().split(b"\n\n")
                    if events[-1] != b"data: [DONE]":
                        self._fail("stream without [DONE] (in-band error or cut)")
                        return
                else:
                    answer = orjson.loads(await resp.read())
                    ttft = time.perf_counter() - start
                    if not answer.get("choices"):
                        self._fail("JSON answer without choices")
                        return
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            self._fail(type(exc).__name__)
            return
        finally:
            self.pending.discard(rid)
        self.answered += 1
        if stream and ttft is not None:  # TTFT means something for streams only
            self.ttft.append(ttft)
        self.e2e.append(time.perf_counter() - start)

    async def run(self, rate: float, duration: float, drain: float) -> dict[str, Any]:
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         timeout=aiohttp.ClientTimeout(total=None)) as session:
            start = time.perf_counter()
            next_at = start
            while next_at < start + duration:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                rid = self.sent
                self.sent += 1
                self.pending.add(rid)
                task = asyncio.create_task(self.one(session, rid))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                next_at += self.rng.expovariate(rate)
            elapsed = time.perf_counter() - start
            if tasks:
                await asyncio.wait(set(tasks), timeout=drain)
            lost = len(self.pending)
            for task in list(tasks):
                task.cancel()
        return {"sent": self.sent, "answered": self.answered, "failed": self.failed, "lost": lost,
                "failures": self.failures, "offered_rate": self.sent / elapsed}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of steady load")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second (Poisson)")
    parser.add_argument("--engines", type=int, default=8)
    parser.add_argument("--profile", default="llama-8b-h100")
    parser.add_argument("--preset", default="precise-prefix")
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "soak"))
    args = parser.parse_args()
    procs: list[asyncio.subprocess.Process] = []
    rss: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            sim, ready = await spawn(["sim", "--port", "0", "--engines", str(args.engines), "--profile", args.profile,
                                      "--max-num-seqs", "256", "--seed", str(args.seed)], Path(tmp) / "sim.json")
            procs.append(sim)
            endpoints = [a for e in ready["engines"] for a in ("--endpoint", e["url"])]
            router, rready = await spawn(["router", "--port", "0", "--preset", args.preset, *endpoints],
                                         Path(tmp) / "router.json")
            procs.append(router)
            soak = Soak(rready["url"], random.Random(args.seed))
            warm = await Soak(rready["url"], random.Random(args.seed + 1)).run(20.0, 2.0, 30.0)  # connections, JIT
            t0 = time.perf_counter()

            async def sample() -> None:
                while True:
                    rss.append((time.perf_counter() - t0, rss_kib(router.pid)))
                    await asyncio.sleep(5.0)

            sampler = asyncio.create_task(sample())
            counts = await soak.run(args.rate, args.duration, args.drain_timeout)
            sampler.cancel()
            rss.append((time.perf_counter() - t0, rss_kib(router.pid)))
            async with aiohttp.ClientSession() as session, session.get(rready["url"] + "/metrics") as resp:
                metrics = await resp.text()
        finally:
            for p in procs:
                if p.returncode is None:
                    p.terminate()
                    await p.wait()
    kv = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
          if line.startswith("kserve_llmd_router_kv_") and not line.startswith("#")}
    result: dict[str, Any] = {
        "duration_s": args.duration, "rate_rps": args.rate, "engines": args.engines, "profile": args.profile,
        "preset": args.preset, "warmup": warm, **counts,
        "router_rss_kib": {"start": rss[0][1], "end": rss[-1][1], "max": max(r for _, r in rss),
                           "samples": [[round(t, 1), r] for t, r in rss]},
        "ttft_ms": {q: pct(soak.ttft, p) * 1e3 for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))},
        "e2e_ms": {q: pct(soak.e2e, p) * 1e3 for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))},
        "router_kv_metrics": kv,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg()},
        "command": "python benchmarks/soak.py " + " ".join(sys.argv[1:]),
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    r = result["router_rss_kib"]
    md = [
        "# Router soak",
        "",
        f"{args.engines} simulated engines (`{args.profile}`, one process) behind the router (`{args.preset}`), "
        f"open-loop Poisson arrivals at {args.rate:g} req/s for {args.duration:g} s (70 % streaming, prompts in 16 "
        f"shared-prefix groups, 8–63 output tokens), on {os.cpu_count()} CPUs shared with other work.",
        "",
        "| sent | answered | failed | **lost** | offered rate |",
        "| --- | --- | --- | --- | --- |",
        f"| {result['sent']} | {result['answered']} | {result['failed']} | **{result['lost']}** | "
        f"{result['offered_rate']:.1f} req/s |",
        "",
        f"Failures by kind: {result['failures'] or 'none'}.",
        "",
        f"Router RSS: {r['start'] / 1024:.1f} MiB at start, {r['end'] / 1024:.1f} MiB at end, "
        f"{r['max'] / 1024:.1f} MiB max (sampled every 5 s).",
        "",
        "| latency (client-side, ms; TTFT of streams, E2E of all) | p50 | p90 | p99 |",
        "| --- | --- | --- | --- |",
        f"| TTFT | {result['ttft_ms']['p50']:.1f} | {result['ttft_ms']['p90']:.1f} | {result['ttft_ms']['p99']:.1f} |",
        f"| E2E | {result['e2e_ms']['p50']:.1f} | {result['e2e_ms']['p90']:.1f} | {result['e2e_ms']['p99']:.1f} |",
        "",
        f"Command: `{result['command'].strip()}`",
    ]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if result["lost"] == 0 and result["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
