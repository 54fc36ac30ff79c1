"""`kserve-llmd bench`: drive one OpenAI-compatible endpoint, or compare router configurations on fresh clusters.

```bash
kserve-llmd bench --target http://127.0.0.1:8000 --scenario shared-prefix-demo --qps 2,4,8 --duration 20 -o out/
kserve-llmd bench --compare --configs round-robin,precise-prefix --engines 4 --profile llama-8b-h100 \\
    --time-scale 2 --scenario shared-prefix-demo -o out/
```
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kserve_llmd.benchmark.compare import ClusterSpec
    from kserve_llmd.benchmark.scenario import ClusterDefaults

HELP = "Benchmark an OpenAI-compatible endpoint, or compare router configurations."


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", help="scenario YAML file, or a name in benchmarks/scenarios/ (required)")
    parser.add_argument("--target", help="base URL of the OpenAI-compatible endpoint (not with --compare)")
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--qps", type=_floats, help="Poisson QPS ladder, e.g. 1,2,4 (overrides the scenario)")
    load.add_argument("--concurrency", type=_ints, help="fixed concurrency (or a ladder, e.g. 4,8,16)")
    parser.add_argument("--duration", type=_floats,
                        help="seconds of arrivals per level: one for all, or one per level (e.g. 20,20,62.5)")
    parser.add_argument("--num-requests", type=int, help="requests per level (after warm-up)")
    parser.add_argument("--warmup", type=int, help="requests per level sent first and left out of the results")
    parser.add_argument("--slo-ttft-ms", type=float, help="goodput SLO on TTFT (ms)")
    parser.add_argument("--slo-itl-ms", type=float, help="goodput SLO on inter-token latency (ms, per-request TPOT)")
    parser.add_argument("--engine-metrics", action="extend", nargs="+", default=[], metavar="URL",
                        help="an engine's base or /metrics URL, scraped for prefix-cache counters (repeatable)")
    parser.add_argument("--model", help="model name to send (default: the target's first /v1/models id)")
    parser.add_argument("--seed", type=int, help="seed of the workload and the arrivals (default: the scenario's)")
    parser.add_argument("-o", "--output", type=Path, default=Path("bench-results"), help="output folder")
    parser.add_argument("--name", help="file stem of the report (default: bench_<scenario>)")
    parser.add_argument("--label", default="target", help="configuration name of the target in the report")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    compare = parser.add_argument_group("comparison (--compare)")
    compare.add_argument("--compare", action="store_true",
                         help="run the scenario against each --configs preset, each on a fresh sim + router")
    compare.add_argument("--configs", help="router presets to compare, comma-separated (default: the scenario's "
                         "cluster.configs; pd-decider splits the engines into prefill and decode pools)")
    compare.add_argument("--engines", type=int, help="simulated engines per configuration (default: scenario's)")
    compare.add_argument("--profile", help="simulator timing profile (default: the scenario's)")
    compare.add_argument("--time-scale", type=float, help="simulator time scale, durations × F (default: scenario's)")
    compare.add_argument("--sim-arg", action="append", default=[], metavar="ARG",
                         help="extra `kserve-llmd sim` argument(s), shell-split, added to the scenario's")
    compare.add_argument("--router-arg", action="append", default=[], metavar="ARG",
                         help="extra `kserve-llmd router` argument(s), shell-split, added to the scenario's")


def cluster_from_args(args: argparse.Namespace, defaults: ClusterDefaults) -> tuple[ClusterSpec, list[str]]:
    """The cluster of ``--compare``: the scenario's ``cluster`` section, overridden by the command line."""
    from kserve_llmd.benchmark.compare import ClusterSpec

    spec = ClusterSpec(
        engines=args.engines if args.engines is not None else defaults.engines,
        profile=args.profile or defaults.profile,
        time_scale=args.time_scale if args.time_scale is not None else defaults.time_scale,
        sim_args=(*defaults.sim_args, *(a for arg in args.sim_arg for a in shlex.split(arg))),
        router_args=(*defaults.router_args, *(a for arg in args.router_arg for a in shlex.split(arg))))
    configs = [c.strip() for c in args.configs.split(",") if c.strip()] if args.configs else list(defaults.configs)
    return spec, configs


def run(args: argparse.Namespace) -> int:
    from kserve_llmd.benchmark import orchestrate
    from kserve_llmd.benchmark import scenario as scenario_mod
    from kserve_llmd.benchmark.report import markdown
    from kserve_llmd.errors import KserveLlmdError

    if not args.scenario:
        print("kserve-llmd bench: --scenario FILE|NAME is required", file=sys.stderr)
        return 2
    if args.compare == bool(args.target):
        print("kserve-llmd bench: give exactly one of --target URL or --compare", file=sys.stderr)
        return 2
    try:
        scenario = scenario_mod.with_overrides(
            scenario_mod.load(args.scenario), qps=args.qps, concurrency=args.concurrency, duration_s=args.duration,
            num_requests=args.num_requests, warmup=args.warmup, slo_ttft_ms=args.slo_ttft_ms,
            slo_itl_ms=args.slo_itl_ms, seed=args.seed, model=args.model)
        stem = args.name or f"bench_{scenario.name}"
        command = "kserve-llmd " + shlex.join(sys.argv[1:])
        if args.compare:
            spec, configs = cluster_from_args(args, scenario.cluster)
            report = orchestrate.run_until_signal(orchestrate.bench_compare(
                configs, spec, scenario, out_dir=args.output, stem=stem, command=command,
                show_progress=not args.quiet))
        else:
            report = orchestrate.run_until_signal(orchestrate.bench_target(
                args.target, scenario, out_dir=args.output, stem=stem, command=command, label=args.label,
                engine_metrics_urls=args.engine_metrics, model=args.model, show_progress=not args.quiet))
    except KserveLlmdError as exc:
        print(f"kserve-llmd bench: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kserve-llmd bench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    print(markdown(report))
    print(f"report written to {args.output}/{stem}.{{json,md,png}}", file=sys.stderr)
    return 0
