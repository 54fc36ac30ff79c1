"""``bench --compare``: the same scenario against several router configurations, each on a FRESH cluster.

For every configuration, in order: start ``kserve-llmd sim`` (cold caches), start ``kserve-llmd router --preset X``
on the sim's engines, run the scenario's whole ladder through the router (engine prefix-cache counters scraped
from every engine), then stop the router and the engines. Children are stopped on every exit path, Ctrl-C
included. ``pd-decider`` runs on two simulator pools: ``engines // 2`` prefill engines and the rest decode.
Each configuration uses the same seed, so each sees the same requests at the same offsets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from kserve_llmd.benchmark.processes import ManagedProcess
from kserve_llmd.benchmark.records import NsClock, RequestRecord
from kserve_llmd.benchmark.report import RunSummary
from kserve_llmd.benchmark.runner import Runner
from kserve_llmd.benchmark.scenario import Scenario

CONFIGS = ("round-robin", "least-load", "approx-prefix", "precise-prefix", "pd-decider")
PD_CONFIGS = frozenset({"pd-decider"})


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    engines: int
    profile: str
    time_scale: float
    sim_args: tuple[str, ...] = ()  # extra ``kserve-llmd sim`` flags, e.g. ("--kv-cache-size", "4096")
    router_args: tuple[str, ...] = ()  # extra ``kserve-llmd router`` flags

    def describe(self) -> dict[str, object]:
        env: dict[str, object] = {"engines": self.engines, "profile": self.profile, "time_scale": self.time_scale}
        if self.sim_args:
            env["sim_args"] = " ".join(self.sim_args)
        if self.router_args:
            env["router_args"] = " ".join(self.router_args)
        return env


@dataclass(slots=True)
class ConfigResult:
    summary: RunSummary
    records: list[RequestRecord] = field(default_factory=list)


def _sim(spec: ClusterSpec, engines: int, role: str, log: Path) -> ManagedProcess:
    args = ["sim", "--port", "0", "--engines", str(engines), "--profile", spec.profile,
            "--time-scale", f"{spec.time_scale:g}"]
    if role != "both":
        args += ["--role", role]
    return ManagedProcess(f"sim-{role}", [*args, *spec.sim_args], log)


def _urls(process: ManagedProcess) -> list[str]:
    return [str(engine["url"]) for engine in process.ready["engines"]]


def _endpoint_args(process: ManagedProcess) -> list[str]:
    """``URL=ZMQ`` per engine (the router's CLI form), so the precise index subscribes to each engine's events."""
    return [f"{e['url']}={e['kv_events']}" if e.get("kv_events") else str(e["url"]) for e in process.ready["engines"]]


async def run_config(config: str, spec: ClusterSpec, scenario: Scenario, *, logs: Path, clock: NsClock,
                     show_progress: bool = True) -> ConfigResult:
    """One configuration on a freshly started cluster; everything it started is stopped before it returns."""
    if config in PD_CONFIGS:
        if spec.engines < 2:
            raise ValueError(f"{config} needs at least 2 engines (prefill and decode pools)")
        pools = {"prefill": _sim(spec, spec.engines // 2, "prefill", logs / f"{config}-sim-prefill.log"),
                 "decode": _sim(spec, spec.engines - spec.engines // 2, "decode", logs / f"{config}-sim-decode.log")}
    else:
        pools = {"both": _sim(spec, spec.engines, "both", logs / f"{config}-sim.log")}
    started: list[ManagedProcess] = []
    try:
        for process in pools.values():
            started.append(process)
            await process.start()
        router_args = ["router", "--port", "0", "--preset", config]
        for role, process in pools.items():
            flag = "--endpoint" if role == "both" else f"--{role}"
            for endpoint in _endpoint_args(process):
                router_args += [flag, endpoint]
        router = ManagedProcess("router", [*router_args, *spec.router_args], logs / f"{config}-router.log")
        started.append(router)
        await router.start()
        target = str(router.ready["url"])
        engines = [url for process in pools.values() for url in _urls(process)]
        runner = Runner(target, scenario, rng=random.Random(scenario.seed), clock=clock,
                        engine_metrics_urls=engines, show_progress=show_progress, label=config)
        levels = await runner.run()
    finally:
        for process in reversed(started):
            await process.aclose()
    records = [*runner.warmup_records, *(r for level in levels for r in level.records)]
    return ConfigResult(RunSummary(config=config, target=target, levels=[lv.summary for lv in levels]), records)
