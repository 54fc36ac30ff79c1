"""The pipeline steps as plain functions: primitive parameters in, primitive results and files out.

Each ``pipelines/components/<name>.py`` is a thin ``@dsl.component`` whose body imports one of these and calls it,
so everything here is tested without KFP. Artifacts are written to the paths KFP hands the component; metrics are
reported through a ``log_metric`` callback (``Metrics.log_metric`` in the component).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from kserve_llmd.rollout import canary
from kserve_llmd.rollout.backends import backend_for
from kserve_llmd.rollout.bench import run_benchmark
from kserve_llmd.rollout.report import benchmark_report
from kserve_llmd.rollout.spec import DeploySpec
from kserve_llmd.rollout.state import DeploymentState

log = logging.getLogger(__name__)


class Deployed(NamedTuple):
    endpoint: str
    state: str  # DeploymentState JSON


class CanaryResult(NamedTuple):
    decision: str  # promote | rollback
    candidate_state: str


def deploy(**params: object) -> Deployed:
    spec = DeploySpec.parse(**params)
    log.info("deploying %s", spec.model_dump_json())
    state = backend_for(spec.target).deploy(spec)
    log.info("%s is ready at %s", state.name, state.endpoint)
    return Deployed(endpoint=state.endpoint, state=state.to_json())


def benchmark(
    endpoint: str, scenario: str, model: str, seed: int, *, log_metric: Callable[[str, float], None], report_path: str
) -> dict[str, float]:
    result = run_benchmark(endpoint, scenario, model=model or None, seed=seed)
    for name, value in result.metrics.items():
        log_metric(name, value)
    Path(report_path).write_text(benchmark_report(result, title=f"Benchmark of {endpoint}"))
    return result.metrics


def run_canary(
    current_state: str,
    *,
    scenario: str,
    slos: str,
    max_regression: str,
    canary_weight: float,
    seed: int,
    evidence_path: str,
    report_path: str,
    **candidate: object,
) -> CanaryResult:
    current = DeploymentState.from_json(current_state, param="current_state")
    spec = DeploySpec.parse(**{"target": current.target, "model": current.model, **candidate})
    outcome = canary.run_canary(
        current, spec, backend=backend_for(current.target), scenario=scenario, slos=slos,
        max_regression=max_regression, weight=canary_weight, seed=seed,
    )  # fmt: skip
    Path(evidence_path).write_text(json.dumps(outcome.evidence, indent=2))
    Path(report_path).write_text(outcome.report)
    log.info("canary decision: %s (%s)", outcome.decision.decision, "; ".join(outcome.decision.reasons))
    return CanaryResult(decision=outcome.decision.decision, candidate_state=outcome.candidate.to_json())


def promote(current_state: str, candidate_state: str) -> str:
    current = DeploymentState.from_json(current_state, param="current_state")
    candidate = DeploymentState.from_json(candidate_state, param="candidate_state")
    return canary.promote(current, candidate, backend=backend_for(current.target)).to_json()


def rollback(current_state: str, candidate_state: str) -> str:
    current = DeploymentState.from_json(current_state, param="current_state")
    candidate = DeploymentState.from_json(candidate_state, param="candidate_state")
    return canary.rollback(current, candidate, backend=backend_for(current.target)).to_json()


def teardown(state: str) -> None:
    deployment = DeploymentState.from_json(state)
    backend_for(deployment.target).delete(deployment)
    log.info("%s deleted", deployment.name)
