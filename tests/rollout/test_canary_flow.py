"""The canary flow with a backend double and a benchmark double: decisions, ordering, and cleanup on failure."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from kserve_llmd.errors import ConfigError, UpstreamFailedError
from kserve_llmd.rollout import canary
from kserve_llmd.rollout.bench import BenchResult
from kserve_llmd.rollout.spec import DeploySpec
from kserve_llmd.rollout.state import DeploymentState
from kserve_llmd.router.traffic import TrafficUpdate

SCENARIO = str(Path(__file__).resolve().parents[2] / "pipelines" / "scenarios" / "canary-smoke.yaml")
CURRENT = DeploymentState(name="stable", target="local", model="m", endpoint="http://r1", engines=("http://e1",))
SLOS = "ttft_p95_ms<=500,error_rate<=0.01"


class BackendDouble:
    """Records every call; ``deploy`` returns a state at fake URLs (no processes)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def deploy(self, spec: DeploySpec) -> DeploymentState:
        self.calls.append(("deploy", spec.name))
        return DeploymentState(name=spec.name, target="local", model="m", endpoint="http://r2", engines=("http://e2",))

    def delete(self, state: DeploymentState) -> None:
        self.calls.append(("delete", state.name))

    def set_traffic(self, router: DeploymentState, model: str, update: TrafficUpdate | None) -> None:
        weights = None if update is None else {v.name: v.weight for v in update.versions}
        self.calls.append(("traffic", weights))


def bench_double(candidate_ttft: float, *, fail: bool = False) -> canary.BenchFn:
    async def bench(router: str, versions: Mapping[str, str], scenario: str, model: str, seed: int) -> dict[
        str, BenchResult
    ]:
        assert router == CURRENT.endpoint
        assert dict(versions) == {"current": "stable", "candidate": "canary"}
        if fail:
            raise UpstreamFailedError("benchmark blew up")
        ttft = {"current": 100.0, "candidate": candidate_ttft}
        return {
            name: BenchResult(url=router, scenario="s", metrics={"ttft_p95_ms": ttft[name], "error_rate": 0.0},
                              levels=[])
            for name in versions
        }  # fmt: skip

    return bench


def _run(backend: BackendDouble, **kwargs: object) -> canary.CanaryOutcome:
    params: dict[str, object] = {"scenario": SCENARIO, "slos": SLOS, "max_regression": "ttft_p95_ms:20%",
                                 "bench": bench_double(110.0), **kwargs}  # fmt: skip
    return canary.run_canary(CURRENT, DeploySpec(name="canary"), backend=backend, **params)  # type: ignore[arg-type]


def test_good_candidate_is_promoted_with_evidence() -> None:
    backend = BackendDouble()
    outcome = _run(backend, weight=25.0)
    assert outcome.decision.decision == "promote"
    assert backend.calls == [("deploy", "canary"), ("traffic", {"stable": 75.0, "canary": 25.0})]
    assert outcome.evidence["decision"] == "promote"
    assert outcome.evidence["context"]["canary_weight"] == "25%"
    assert "# Canary: PROMOTE" in outcome.report
    assert canary.promote(CURRENT, outcome.candidate, backend=backend).name == "canary"
    assert backend.calls[-2:] == [("traffic", {"stable": 0.0, "canary": 100.0}), ("delete", "stable")]


def test_regressed_candidate_is_rolled_back() -> None:
    backend = BackendDouble()
    outcome = _run(backend, bench=bench_double(130.0))  # within the SLO, but 30% worse than current
    assert outcome.decision.decision == "rollback"
    assert "REGRESSED" in outcome.decision.reasons[0]
    assert canary.rollback(CURRENT, outcome.candidate, backend=backend).name == "stable"
    assert backend.calls[-2:] == [("traffic", {"stable": 100.0, "canary": 0.0}), ("delete", "canary")]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"slos": "ttft_p95_ms<=fast"}, "slos: 'fast'"),
        ({"max_regression": "ttft:5%"}, "unknown metric 'ttft'"),
        ({"scenario": "no-such-scenario"}, "unknown scenario 'no-such-scenario'"),
        ({"weight": 100.0}, "canary_weight"),
    ],
)
def test_bad_inputs_fail_before_anything_is_created(kwargs: dict[str, object], fragment: str) -> None:
    backend = BackendDouble()
    with pytest.raises(ConfigError, match=fragment):
        _run(backend, **kwargs)
    assert backend.calls == []


def test_failure_after_deploy_removes_the_split_and_the_candidate() -> None:
    backend = BackendDouble()
    with pytest.raises(UpstreamFailedError, match="benchmark blew up"):
        _run(backend, bench=bench_double(0.0, fail=True))
    assert backend.calls == [
        ("deploy", "canary"), ("traffic", {"stable": 90.0, "canary": 10.0}), ("traffic", None), ("delete", "canary"),
    ]  # fmt: skip
