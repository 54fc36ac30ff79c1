"""The canary: deploy the candidate beside the current version, give it a share of the traffic at the router,
benchmark both under the same load at the same time (through that router, each pinned to its version), and decide
``promote`` or ``rollback`` with evidence.

Order matters for failure handling: the rules (SLOs, regressions) and the scenario are parsed BEFORE anything is
created, so a typo costs nothing; once the candidate exists, any failure removes the split and deletes the candidate
before the error propagates, leaving the current version exactly as it was.

``promote`` shifts all traffic to the candidate and then deletes the current version; ``rollback`` shifts all
traffic back (candidate weight 0) and deletes the candidate. Both return the state of the version left serving.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kserve_llmd.errors import ConfigError
from kserve_llmd.rollout.backends import Backend
from kserve_llmd.rollout.bench import BenchResult, load_scenario, run_benchmarks
from kserve_llmd.rollout.decision import Decision, decide
from kserve_llmd.rollout.report import canary_report
from kserve_llmd.rollout.slo import parse_regressions, parse_slos
from kserve_llmd.rollout.spec import DeploySpec
from kserve_llmd.rollout.state import DeploymentState
from kserve_llmd.router.traffic import TrafficUpdate, VersionWeight

#: ``(router URL, {name: version}, scenario, model, seed) -> {name: result}``: the benchmark (injectable for tests).
BenchFn = Callable[[str, Mapping[str, str], str, str, int], Awaitable[dict[str, BenchResult]]]


async def _default_bench(
    router: str, versions: Mapping[str, str], scenario: str, model: str, seed: int
) -> dict[str, BenchResult]:
    targets = dict.fromkeys(versions, router)
    return await run_benchmarks(targets, scenario, model=model, seed=seed, versions=versions)


@dataclass(frozen=True, slots=True)
class CanaryOutcome:
    decision: Decision
    candidate: DeploymentState
    evidence: dict[str, Any]
    report: str


def split(current: DeploymentState, candidate: DeploymentState, candidate_weight: float) -> TrafficUpdate:
    """The router table: ``current`` keeps ``100 - w``, ``candidate`` gets ``w`` (percent)."""
    return TrafficUpdate(
        model=current.model,
        versions=(
            VersionWeight(name=current.name, weight=100 - candidate_weight, endpoints=current.engines),
            VersionWeight(name=candidate.name, weight=candidate_weight, endpoints=candidate.engines),
        ),
    )


def run_canary(
    current: DeploymentState,
    candidate_spec: DeploySpec,
    *,
    backend: Backend,
    scenario: str,
    slos: str,
    max_regression: str = "",
    weight: float = 10.0,
    seed: int = 0,
    bench: BenchFn = _default_bench,
) -> CanaryOutcome:
    rules = parse_slos(slos)
    regressions = parse_regressions(max_regression)
    if not 0 < weight < 100:
        raise ConfigError(f"canary_weight: {weight:g} is not a percentage strictly between 0 and 100", param="weight")
    if candidate_spec.name == current.name:
        raise ConfigError(f"candidate_name: {current.name!r} is already the current version's name", param="name")
    load_scenario(scenario)  # unknown scenario: fail before creating anything

    candidate = backend.deploy(candidate_spec)
    try:
        backend.set_traffic(current, current.model, split(current, candidate, weight))
        # Both versions through the SAME router at the same time, each pinned to its version (x-llmd-version), so
        # neither sample contains the other's requests while the split serves everyone else.
        versions = {"current": current.name, "candidate": candidate.name}
        results: dict[str, BenchResult] = asyncio.run(
            _bench(bench, current.endpoint, versions, scenario, current.model, seed)
        )
        decision = decide(results["current"].metrics, results["candidate"].metrics, rules, regressions)
    except BaseException:
        with contextlib.suppress(Exception):
            backend.set_traffic(current, current.model, None)
        backend.delete(candidate)
        raise
    context = {
        "current": f"{current.name} @ {current.endpoint}",
        "candidate": f"{candidate.name} @ {candidate.endpoint}",
        "canary_weight": f"{weight:g}%",
        "scenario": scenario,
        "slos": ",".join(str(r) for r in rules),
        "max_regression": ",".join(str(r) for r in regressions) or "(none)",
    }
    evidence = {
        **decision.model_dump(mode="json"),
        "context": context,
        "benchmarks": {name: {"url": r.url, "levels": r.levels} for name, r in results.items()},
    }
    return CanaryOutcome(decision, candidate, evidence, canary_report(decision, context))


async def _bench(bench: BenchFn, router: str, versions: Mapping[str, str], scenario: str, model: str, seed: int) -> Any:
    return await bench(router, versions, scenario, model, seed)  # asyncio.run wants a coroutine, not any awaitable


def promote(current: DeploymentState, candidate: DeploymentState, *, backend: Backend) -> DeploymentState:
    """All traffic to the candidate (in-flight requests finish where they are), then the current version goes.

    Returns the candidate, now the serving version (locally its own router is the endpoint from here on).
    """
    backend.set_traffic(current, current.model, split(current, candidate, 100.0))
    backend.delete(current)
    return candidate


def rollback(current: DeploymentState, candidate: DeploymentState, *, backend: Backend) -> DeploymentState:
    """All traffic back to the current version (the candidate keeps weight 0, so requests already on it finish),
    then the candidate is deleted. Returns the current version."""
    try:
        backend.set_traffic(current, current.model, split(current, candidate, 0.0))
    finally:
        backend.delete(candidate)
    return current
