"""Prefill/decode disaggregation vs aggregated serving, ON THE SAME ENGINE COUNT (a script, not a test).

Usage::

    python benchmarks/pd_bench.py [--engines 4] [--qps 2 5] [--duration 20] [--time-scale 10]

Workload: the harness scenario ``pd-long-prompt`` (random 1000-token prompts, 63 output tokens: llm-d's
4000/250 P/D shape scaled by 1/4), Poisson arrivals, simulated Llama-8B/H100 engines (``llama-8b-h100`` profile)
slowed down ``--time-scale`` times so two shared CPU cores keep up. Configurations, each on FRESH engines:

- ``aggregated``: N engines of role both, preset ``precise-prefix``;
- ``pd-always-1p``: 1 prefill + N−1 decode, preset ``pd-always`` (KServe's default: every request disaggregated);
- ``pd-always-2p``: 2 prefill + N−2 decode, preset ``pd-always``;
- ``pd-decider-1p``: 1 prefill + N−1 decode, preset ``pd-decider`` (prompt/uncached thresholds + prefill load).

Measured with the benchmark harness (``kserve_llmd.benchmark``): TTFT p50/p90, ITL p90, E2E p50/p90, output
throughput per level; plus the router's P/D decision counters. Writes ``benchmarks/results/pd.{json,md}``.
Times are wall-clock milliseconds at the given time-scale: divide by it for simulated-H100 milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from kserve_llmd.benchmark import scenario as scenario_mod
from kserve_llmd.benchmark.processes import ManagedProcess
from kserve_llmd.benchmark.runner import Runner

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIO = "pd-long-prompt"


def configs(engines: int) -> list[tuple[str, str, int, int]]:
    """``(name, preset, prefill engines, decode-or-both engines)``; 0 prefill engines = aggregated."""
    return [("aggregated", "precise-prefix", 0, engines), ("pd-always-1p", "pd-always", 1, engines - 1),
            ("pd-always-2p", "pd-always", 2, engines - 2), ("pd-decider-1p", "pd-decider", 1, engines - 1)]


def _sim(role: str, n: int, args: argparse.Namespace, logs: Path, name: str) -> ManagedProcess:
    cmd = ["sim", "--port", "0", "--engines", str(n), "--profile", "llama-8b-h100", "--time-scale",
           f"{args.time_scale:g}", "--kv-cache-size", "4096", "--role", role, "--seed", str(args.seed)]
    return ManagedProcess(f"{name}-sim-{role}", cmd, logs / f"{name}-sim-{role}.log")


def _endpoints(process: ManagedProcess) -> list[str]:
    return [f"{e['url']}={e['kv_events']}" for e in process.ready["engines"]]


async def _pd_counters(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for m in re.finditer(r'^kserve_llmd_router_pd_(decisions|fallbacks|failures)_total\{([^}]*)\} (\S+)$', text,
                         re.MULTILINE):
        out[f"{m.group(1)}{{{m.group(2)}}}"] = float(m.group(3))
    return out


async def run_one(name: str, preset: str, n_prefill: int, n_decode: int, scenario: scenario_mod.Scenario,
                  args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    started: list[ManagedProcess] = []
    try:
        pools: list[tuple[str, ManagedProcess]] = []
        if n_prefill:
            pools += [("--prefill", _sim("prefill", n_prefill, args, logs, name)),
                      ("--decode", _sim("decode", n_decode, args, logs, name))]
        else:
            pools += [("--endpoint", _sim("both", n_decode, args, logs, name))]
        router_args = ["router", "--port", "0", "--preset", preset, "--seed", str(args.seed)]
        for flag, process in pools:
            started.append(process)
            await process.start()
            for endpoint in _endpoints(process):
                router_args += [flag, endpoint]
        router = ManagedProcess(f"{name}-router", router_args, logs / f"{name}-router.log")
        started.append(router)
        await router.start()
        target = str(router.ready["url"])
        engine_urls = [str(e["url"]) for _, p in pools for e in p.ready["engines"]]
        levels = await Runner(target, scenario, rng=random.Random(scenario.seed), engine_metrics_urls=engine_urls,
                              show_progress=not args.quiet, label=name).run()
        counters = await _pd_counters(target)
    finally:
        for process in reversed(started):
            await process.aclose()
    return {"config": name, "preset": preset, "prefill_engines": n_prefill, "decode_engines": n_decode,
            "levels": [lv.summary.model_dump() for lv in levels], "pd_counters": counters}


def _f(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# P/D vs aggregated on {report['engines']} engines ({SCENARIO})", "",
             f"Command: `{report['command']}`", "",
             f"Workload: {report['workload']}. Times are wall-clock ms at time-scale {report['time_scale']:g} "
             f"(÷ {report['time_scale']:g} for simulated H100 ms).", "",
             "| config | pools (P+D) | QPS | done/failed | TTFT p50 | TTFT p90 | ITL p90 | E2E p50 | E2E p90 | "
             "out tok/s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in report["runs"]:
        pools = f"{run['prefill_engines']}+{run['decode_engines']}" if run["prefill_engines"] else \
            f"{run['decode_engines']} both"
        for lv in run["levels"]:
            lines.append(
                f"| {run['config']} | {pools} | {_f(lv['qps'], 1)} | {lv['completed']}/{lv['failed']} | "
                f"{_f(lv['ttft_ms']['p50'])} | {_f(lv['ttft_ms']['p90'])} | {_f(lv['itl_ms']['p90'])} | "
                f"{_f(lv['e2e_ms']['p50'])} | {_f(lv['e2e_ms']['p90'])} | {_f(lv['output_throughput'], 1)} |")
    lines += ["", "Router P/D counters (whole run, warm-up included):", ""]
    for run in report["runs"]:
        if run["pd_counters"]:
            counters = ", ".join(f"`{k}` {v:g}" for k, v in sorted(run["pd_counters"].items()))
            lines.append(f"- {run['config']}: {counters}")
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> int:
    scenario = scenario_mod.with_overrides(scenario_mod.load(SCENARIO), qps=args.qps, duration_s=args.duration,
                                           warmup=args.warmup, seed=args.seed)
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    runs = []
    for name, preset, n_prefill, n_decode in configs(args.engines):
        if args.only and name not in args.only:
            continue
        print(f"== {name}: {n_prefill} prefill + {n_decode} {'decode' if n_prefill else 'both'}", file=sys.stderr)
        runs.append(await run_one(name, preset, n_prefill, n_decode, scenario, args, logs))
    report = {"scenario": SCENARIO, "engines": args.engines, "time_scale": args.time_scale,
              "profile": "llama-8b-h100", "workload": "random prompts of 1000 tokens, 63 output tokens, Poisson",
              "command": "python benchmarks/pd_bench.py " + " ".join(sys.argv[1:]),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_seconds": round(time.monotonic() - began, 1),
              "runs": runs}
    (RESULTS / "pd.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (RESULTS / "pd.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", type=int, default=4)
    parser.add_argument("--qps", type=float, nargs="+", default=[2.0, 5.0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals per level")
    parser.add_argument("--warmup", type=int, default=5, help="requests per level left out of the statistics")
    parser.add_argument("--time-scale", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="run only these configurations")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
