"""Prefix-cache hit-rate ceilings of a scenario, computed offline from the exact requests a run would send.

A benchmark's engine hit rate cannot tell a miss that routing caused from one no router could avoid; this can. It
takes the runner's own plan (``Runner.plan``: same seed, same Poisson arrival counts, warm-up stage, per-level
restarts; nothing is sent) and reports, per level, Σ hit tokens / Σ prompt tokens under two idealisations:

- ``unlimited``: unbounded caches and a router that always finds the longest cached prefix: a request hits the
  longest run of its leading full blocks that ANY earlier prompt had, capped at ``(n - 1) // block_size`` blocks
  (vLLM recomputes at least the last prompt token). Only the workload limits it.
- ``partition``: each group (shared-prefix group, session; a request without one is its own) is pinned to one
  engine, groups dealt round-robin in order of first appearance; every engine is the simulator's own
  ``KVCacheManager`` with ``kv_blocks`` blocks (LRU eviction, a finished request's blocks queued tail first, its
  output blocks cached too, as vLLM does); requests are served ONE AT A TIME to completion. That is an even static
  placement with no blocks pinned by concurrently running requests: what a prefix-aware router that balances load
  can expect. It is not a bound: a run whose placement is uneven can beat it, and so can a live run whose working
  set sits within a few percent of the cache, where the blocks that running requests pin at the moments a prompt
  leaves and returns decide which side of LRU's cliff it lands on (``benchmarks/README.md``: 88–89% measured against
  82.7% here at shared-prefix's 30 QPS level; ``--timings`` below replays that).
  ``--groups-per-engine 34,34,34,48`` deals the groups UNEVENLY instead (engine i gets that many, in an order
  shuffled with the scenario's seed): the way to see what concentrating groups would buy and what load skew it costs
  (the table then also gives each engine's share of the requests).
  ``--timings RUN.requests.jsonl --config NAME`` serves the requests on that run's own timeline instead of one at a
  time: each is admitted at its first token, stores its output tokens evenly from there to its end, and frees its
  blocks at its end, so running requests pin what they pinned in the run. Placement stays the even deal, so what
  the column shows is the cache behaviour of that timing without any routing. Add ``--placement run`` to put each
  request on the engine the router picked in that run (its ``routed_to``, the router's ``X-Routed-To`` header):
  the run's timing AND its placement, so what is left between that column and the measured hit rate is the gap
  between admission and first token and the engines' own scheduling. The client-side times lag the engine's (a
  request ends at the client after its engine freed it), so a loaded engine can run out of blocks in the replay
  where the real one did not: the replay then ends the running requests closest to their end early, on that
  engine, until the newcomer fits (counted in the last column).

``python -m kserve_llmd.benchmark.ceiling shared-prefix`` prints the table for a scenario; engines, KV-cache size
and block size come from its ``cluster`` section unless given.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from kserve_llmd.benchmark import scenario as scenario_mod
from kserve_llmd.benchmark.records import BenchRequest
from kserve_llmd.benchmark.runner import Runner
from kserve_llmd.simulator.block_pool import Block, BlockPool
from kserve_llmd.simulator.config import SimConfig
from kserve_llmd.simulator.kv_manager import KVCacheManager
from kserve_llmd.simulator.request import Sampling, SimRequest
from kserve_llmd.tokenizer import BuiltinTokenizer

_OUTPUT_TOKEN = 7  # generated tokens only need to exist: they are cached, never matched by another prompt


@dataclass(frozen=True, slots=True)
class LevelCeiling:
    level: str
    measured: bool  # False for the warm-up stage
    requests: int
    unlimited: float
    partition: float
    per_engine: tuple[int, ...]  # requests each engine served
    split_groups: int = 0  # groups whose requests in this level went to more than one engine
    ended_early: int = 0  # on a timeline: requests ended early so that another one fitted (see the docstring)


@dataclass(frozen=True, slots=True)
class Timing:
    """When one request of a run got its first token and ended, in seconds from its level's start."""

    first_token: float
    end: float
    engine: str | None = None  # the endpoint the router picked (``routed_to``), when the run recorded it


def load_timings(path: Path, config: str) -> dict[tuple[str, int], Timing]:
    """``(level, index) → Timing`` of ``config``'s requests in a run's ``*.requests.jsonl``."""
    timings = {}
    with path.open("rb") as lines:
        for line in lines:
            row = orjson.loads(line)
            if row["config"] == config and row["ttft_ms"] is not None and row["e2e_ms"] is not None:
                start = row["start_s"]
                timings[(row["level"], row["index"])] = Timing(start + row["ttft_ms"] / 1000,
                                                               start + row["e2e_ms"] / 1000, row.get("routed_to"))
    if not timings:
        raise ValueError(f"{path} has no completed request of configuration {config!r}")
    return timings


def _tokens(request: BenchRequest, tokenizer: BuiltinTokenizer) -> list[int]:
    if request.messages is not None:
        return tokenizer.encode_chat(request.messages)
    return tokenizer.encode(request.prompt or "")


_ADMIT, _TOKEN, _FREE = 0, 1, 2


def _events(level: str, requests: Sequence[BenchRequest],
            timings: Mapping[tuple[str, int], Timing] | None) -> Iterator[tuple[int, BenchRequest]]:
    """(kind, request) in serving order: one request at a time to completion, or on the run's timeline."""
    if timings is None:
        for request in requests:
            yield _ADMIT, request
            for _ in range(request.max_tokens - 1):  # the last token is sampled, never stored
                yield _TOKEN, request
            yield _FREE, request
        return
    timeline: list[tuple[float, int, int, BenchRequest]] = []
    for request in requests:
        t = timings.get((level, request.index))
        if t is None:
            raise ValueError(f"request {request.index} of level {level!r} did not complete in that run; the replay "
                             "needs every request's timeline")
        stored = request.max_tokens - 1
        timeline.append((t.first_token, _ADMIT, request.index, request))
        timeline.extend((min(t.first_token + (t.end - t.first_token) * (k + 1) / stored, t.end), _TOKEN,
                         request.index, request) for k in range(stored))
        timeline.append((t.end, _FREE, request.index, request))
    timeline.sort(key=lambda e: (e[0], e[1], e[2]))  # at a tie: admit, then tokens, then free
    for _, kind, _, request in timeline:
        yield kind, request


def _run_placement(timings: Mapping[tuple[str, int], Timing], engines: int) -> dict[tuple[str, int], int]:
    """``(level, index) →`` the engine number the run used (endpoint ids numbered in sorted order); every request
    must carry one."""
    ids = sorted({t.engine for t in timings.values() if t.engine is not None})
    if not ids or any(t.engine is None for t in timings.values()):
        raise ValueError("the run did not record where each request went (routed_to); re-run it with this version")
    if len(ids) > engines:
        raise ValueError(f"the run's requests went to {len(ids)} endpoints; the scenario has {engines} engines")
    number = {engine: i for i, engine in enumerate(ids)}
    return {key: number[t.engine] for key, t in timings.items() if t.engine is not None}


def ceilings(scenario: scenario_mod.Scenario, *, engines: int, kv_blocks: int, block_size: int = 16,
             groups_per_engine: Sequence[int] | None = None,
             timings: Mapping[tuple[str, int], Timing] | None = None,
             run_placement: bool = False) -> list[LevelCeiling]:
    """Per level (warm-up stage first): the ``unlimited`` and ``partition`` hit rates of the module docstring;
    ``groups_per_engine`` (one count per engine) replaces the even deal; ``timings`` (``load_timings``) serves the
    requests on a run's timeline instead of one at a time, and ``run_placement`` on the engines the run used."""
    if run_placement and (timings is None or groups_per_engine is not None):
        raise ValueError("the run's placement needs its timings, and replaces any deal of the groups")
    run_engine = _run_placement(timings, engines) if run_placement and timings is not None else {}
    tokenizer = BuiltinTokenizer()
    if groups_per_engine is not None:
        engines = len(groups_per_engine)
        slots = [engine for engine, count in enumerate(groups_per_engine) for _ in range(count)]
        random.Random(scenario.seed).shuffle(slots)
    caches = [KVCacheManager(BlockPool(kv_blocks, block_size), root_hash=1) for _ in range(engines)]
    placement: dict[str, int] = {}
    seen: set[int] = set()  # every prompt block hash computed so far, on any engine
    out = []
    for level, requests in Runner("", scenario, rng=random.Random(scenario.seed), show_progress=False).plan():
        queries = unlimited = partition = 0
        served = [0] * engines
        used: dict[str, set[int]] = {}  # group → the engines its requests of this level went to
        running: dict[int, tuple[SimRequest, int]] = {}  # request index → (its cache state, its engine)
        ended: set[int] = set()  # ended early to make room: their later events are skipped
        ends = None if timings is None else {i: t.end for (label, i), t in timings.items() if label == level.label}
        for kind, request in _events(level.label, requests, timings):
            if request.index in ended:
                continue
            key = request.group or f"request-{request.index}"
            if run_engine:
                engine = run_engine[(level.label, request.index)]
            else:
                if key not in placement:
                    if groups_per_engine is None:
                        placement[key] = len(placement) % engines
                    elif len(placement) < len(slots):
                        placement[key] = slots[len(placement)]
                    else:
                        raise ValueError(f"--groups-per-engine places {len(slots)} groups; the scenario has more")
                engine = placement[key]
            kv = caches[engine]
            if kind == _ADMIT:
                served[engine] += 1
                used.setdefault(key, set()).add(engine)
                sim = SimRequest(request_id=f"{level.label}/{request.index}",
                                 prompt_token_ids=_tokens(request, tokenizer),
                                 sampling=Sampling(max_tokens=request.max_tokens), arrival=0.0)
                hits, hit_tokens = kv.computed_blocks(sim)  # also hashes the prompt's full blocks
                prompt_hashes = sim.block_hashes[:sim.num_tokens // block_size]
                cap = min((sim.num_tokens - 1) // block_size, len(prompt_hashes))
                matched = next((i for i, h in enumerate(prompt_hashes[:cap]) if h not in seen), cap)
                seen.update(prompt_hashes)
                if not _allocate(kv, sim, sim.num_tokens - hit_tokens, hits, engine, running, ended, ends):
                    raise ValueError(f"a {sim.num_tokens}-token prompt does not fit in {kv_blocks} blocks beside "
                                     "the requests running")
                sim.num_computed_tokens = sim.num_tokens
                running[request.index] = (sim, engine)
                queries += sim.num_prompt_tokens
                unlimited += matched * block_size
                partition += hit_tokens
            elif kind == _TOKEN:
                sim = running[request.index][0]
                sim.token_ids.append(_OUTPUT_TOKEN)
                if not _allocate(kv, sim, 1, None, engine, running, ended, ends):
                    raise ValueError(f"a {sim.num_tokens}-token request does not fit in {kv_blocks} blocks beside "
                                     "the requests running")
                sim.num_computed_tokens += 1
            else:
                kv.free(running.pop(request.index)[0])
        out.append(LevelCeiling(level.label, level.measured, len(requests), unlimited / max(queries, 1),
                                partition / max(queries, 1), tuple(served),
                                sum(1 for engines_used in used.values() if len(engines_used) > 1), len(ended)))
    return out


def _allocate(kv: KVCacheManager, sim: SimRequest, new_tokens: int, hits: list[Block] | None, engine: int,
              running: dict[int, tuple[SimRequest, int]], ended: set[int], ends: Mapping[int, float] | None) -> bool:
    """Allocate ``sim``'s new tokens; on a timeline (``ends``: request index → its end), end the engine's running
    request closest to its end, until they fit. False when nothing more can be ended."""
    while not kv.allocate_slots(sim, new_tokens, hits):
        if ends is None:
            return False
        others = [i for i, (other, e) in running.items() if e == engine and other is not sim]
        if not others:
            return False
        victim = min(others, key=ends.__getitem__)
        kv.free(running.pop(victim)[0])
        ended.add(victim)
    return True


def _flag(args: Sequence[str], name: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` in a simulator command line, or None."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kserve_llmd.benchmark.ceiling", description=__doc__.split("\n")[0])
    parser.add_argument("scenario", help="scenario name or YAML path")
    parser.add_argument("--engines", type=int, help="default: the scenario's cluster.engines")
    parser.add_argument("--kv-cache-size", type=int, help="blocks per engine; default: the scenario's sim_args")
    parser.add_argument("--block-size", type=int, help="tokens per block; default: the scenario's sim_args")
    parser.add_argument("--groups-per-engine", metavar="N,N,...", help="deal the groups unevenly: N to each engine")
    parser.add_argument("--timings", type=Path, metavar="RUN.requests.jsonl",
                        help="serve on that run's timeline (with --config) instead of one at a time")
    parser.add_argument("--config", help="the configuration of --timings whose requests to follow")
    parser.add_argument("--placement", choices=("even", "run"), default="even",
                        help="run: each request on the engine the run's router picked (needs --timings)")
    args = parser.parse_args(argv)
    if (args.timings is None) != (args.config is None):
        parser.error("--timings and --config go together")
    if args.placement == "run" and (args.timings is None or args.groups_per_engine):
        parser.error("--placement run needs --timings, and replaces --groups-per-engine")
    quotas = [int(n) for n in args.groups_per_engine.split(",")] if args.groups_per_engine else None
    try:
        timings = load_timings(args.timings, args.config) if args.timings else None
    except (OSError, ValueError, KeyError) as exc:  # unreadable, not JSON lines, or not a run's requests file
        parser.error(f"--timings {args.timings}: {exc!r}")
    scenario = scenario_mod.load(args.scenario)
    defaults = SimConfig()
    sim_args = scenario.cluster.sim_args
    engines = args.engines or scenario.cluster.engines
    kv_blocks = args.kv_cache_size or int(_flag(sim_args, "--kv-cache-size") or defaults.kv_cache_size)
    block_size = args.block_size or int(_flag(sim_args, "--block-size") or defaults.block_size)
    engines = len(quotas) if quotas else engines
    placed = (f"groups dealt {'/'.join(map(str, quotas))}" if quotas else
              "the run's placement" if args.placement == "run" else "even static placement")
    served = f"on the timeline of {args.config} in {args.timings.name}" if timings else "one at a time"
    print(f"{scenario.name}: {engines} engines x {kv_blocks} blocks of {block_size} tokens\n")
    print(f"| level | requests | unlimited caches | {placed}, {served} | requests per engine, busiest / mean "
          "| groups on 2+ engines | ended early to fit |\n|---|---|---|---|---|---|---|")
    try:
        rows = ceilings(scenario, engines=engines, kv_blocks=kv_blocks, block_size=block_size,
                        groups_per_engine=quotas, timings=timings, run_placement=args.placement == "run")
    except ValueError as exc:  # a deal that places too few groups, a run missing requests, a cache too small
        parser.error(str(exc))
    for c in rows:
        label = c.level if c.measured else f"{c.level} (not reported)"
        skew = max(c.per_engine) / max(sum(c.per_engine) / len(c.per_engine), 1e-9)
        print(f"| {label} | {c.requests} | {100 * c.unlimited:.1f}% | {100 * c.partition:.1f}% | "
              f"{'/'.join(map(str, c.per_engine))}, {skew:.2f}× | {c.split_groups} | {c.ended_early} |")


if __name__ == "__main__":
    main()
