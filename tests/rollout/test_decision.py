"""The canary verdict and its evidence."""

from __future__ import annotations

from kserve_llmd.rollout.decision import decide
from kserve_llmd.rollout.slo import parse_regressions, parse_slos

SLOS = parse_slos("ttft_p95_ms<=500,itl_p95_ms<=50,error_rate<=0.01")
REGRESSIONS = parse_regressions("ttft_p95_ms:20%,itl_p95_ms:20%,error_rate:0.005,output_tokens_per_s:10%")
CURRENT = {"ttft_p95_ms": 100.0, "itl_p95_ms": 10.0, "error_rate": 0.0, "output_tokens_per_s": 1000.0}


def test_promote_when_every_check_passes() -> None:
    candidate = {"ttft_p95_ms": 110.0, "itl_p95_ms": 9.0, "error_rate": 0.004, "output_tokens_per_s": 950.0}
    decision = decide(CURRENT, candidate, SLOS, REGRESSIONS)
    assert decision.decision == "promote"
    assert decision.reasons == ["all 7 checks passed"]
    assert all(c.passed for c in decision.checks)
    assert decision.current == CURRENT
    assert decision.candidate == candidate


def test_slo_violation_rolls_back_with_the_reason() -> None:
    candidate = {**CURRENT, "ttft_p95_ms": 501.0}
    decision = decide({**CURRENT, "ttft_p95_ms": 480.0}, candidate, SLOS, REGRESSIONS)
    assert decision.decision == "rollback"
    assert decision.reasons == ["SLO ttft_p95_ms<=500 violated: candidate ttft_p95_ms=501"]


def test_regression_within_slo_still_rolls_back() -> None:
    candidate = {**CURRENT, "ttft_p95_ms": 130.0, "output_tokens_per_s": 800.0}
    decision = decide(CURRENT, candidate, SLOS, REGRESSIONS)
    assert decision.decision == "rollback"
    failed = {c.metric: c for c in decision.checks if not c.passed}
    assert set(failed) == {"ttft_p95_ms", "output_tokens_per_s"}
    assert failed["ttft_p95_ms"].limit == 120.0
    assert failed["ttft_p95_ms"].kind == "regression"
    assert failed["output_tokens_per_s"].limit == 900.0  # higher is better: the limit is below the current value


def test_missing_metrics() -> None:
    candidate = {k: v for k, v in CURRENT.items() if k != "itl_p95_ms"}
    current = {k: v for k, v in CURRENT.items() if k != "error_rate"}
    decision = decide(current, candidate, SLOS, REGRESSIONS)
    assert decision.decision == "rollback"
    by_rule = {c.rule: c for c in decision.checks}
    assert not by_rule["itl_p95_ms<=50"].passed  # no evidence is not good evidence
    assert by_rule["error_rate:0.005"].passed
    assert "skipped" in by_rule["error_rate:0.005"].detail


def test_evidence_round_trips_as_json() -> None:
    decision = decide(CURRENT, CURRENT, SLOS)
    again = type(decision).model_validate_json(decision.model_dump_json())
    assert again == decision
