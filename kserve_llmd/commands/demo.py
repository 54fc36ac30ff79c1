"""`kserve-llmd demo`: local end-to-end demo (the README's main command).

Starts simulated vLLM engines and the router once per configuration, drives the packaged ``demo`` shared-prefix
workload through each, prints the comparison and writes the report (default ``./demo-report/``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

HELP = "Local end-to-end demo: simulator cluster, router configurations compared, report written."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, default=Path("demo-report"), help="report folder")
    parser.add_argument("--configs", help="router presets to compare, comma-separated "
                        "(default round-robin,least-load,precise-prefix)")
    parser.add_argument("--engines", type=int, help="simulated engines (default 4)")
    parser.add_argument("--profile", help="simulator timing profile (default llama-8b-h100)")
    parser.add_argument("--time-scale", type=float, help="simulated durations × F (default 10)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from kserve_llmd.benchmark.demo import demo_plan, run_demo, verdict
    from kserve_llmd.benchmark.orchestrate import run_until_signal
    from kserve_llmd.benchmark.report import markdown
    from kserve_llmd.errors import KserveLlmdError

    started = time.monotonic()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()] if args.configs else None
    try:
        scenario, spec, configs = demo_plan(args.engines, args.profile, args.time_scale, configs)
        print(f"kserve-llmd demo: {spec.engines} simulated engines (profile {spec.profile}, time-scale "
              f"{spec.time_scale:g}) per configuration, fresh for each of: {', '.join(configs)}.\n"
              f"Workload: {scenario.description.strip()}\nEach level sends Poisson arrivals for "
              f"{scenario.load.duration_s:g} s; this takes about a minute per configuration.", file=sys.stderr)
        report = run_until_signal(run_demo(scenario, spec, configs, args.output,
                                           "kserve-llmd " + shlex.join(sys.argv[1:]), show_progress=not args.quiet))
    except KserveLlmdError as exc:
        print(f"kserve-llmd demo: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kserve-llmd demo: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    print(markdown(report))
    print(verdict(report))
    print(f"Report: {args.output}/demo.{{md,json,png}} (per request: demo.requests.jsonl); "
          f"wall time {time.monotonic() - started:.0f} s.")
    return 0
