"""The canary verdict: ``promote`` only when every SLO holds for the candidate AND no metric regressed beyond its
allowance against the current version measured under the same load; otherwise ``rollback``.

Every rule becomes one ``Check`` in the evidence (metric, both values, the limit, pass or fail, and a sentence), so
the JSON artifact explains the decision without re-running anything. A metric missing from the candidate's
benchmark fails its check (no evidence is not good evidence); a metric missing only from the current version skips
the regression check for it, with the reason recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from kserve_llmd.rollout.metrics import better
from kserve_llmd.rollout.slo import SLO, Regression

Verdict = Literal["promote", "rollback"]


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["slo", "regression"]
    metric: str
    rule: str
    candidate: float | None
    current: float | None
    limit: float | None
    passed: bool
    detail: str


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Verdict
    reasons: list[str]
    checks: list[Check]
    current: dict[str, float]
    candidate: dict[str, float]


def decide(
    current: Mapping[str, float],
    candidate: Mapping[str, float],
    slos: Sequence[SLO],
    regressions: Sequence[Regression] = (),
) -> Decision:
    """Judge ``candidate`` against the SLOs and against ``current`` (both flat metric dicts, same load)."""
    checks = [_slo_check(slo, candidate) for slo in slos]
    checks += [_regression_check(rule, current, candidate) for rule in regressions]
    failed = [c for c in checks if not c.passed]
    verdict: Verdict = "rollback" if failed else "promote"
    reasons = [c.detail for c in failed] or [f"all {len(checks)} checks passed"]
    return Decision(decision=verdict, reasons=reasons, checks=checks, current=dict(current), candidate=dict(candidate))


def _slo_check(slo: SLO, candidate: Mapping[str, float]) -> Check:
    value = candidate.get(slo.metric)
    if value is None:
        return Check(
            kind="slo", metric=slo.metric, rule=str(slo), candidate=None, current=None, limit=slo.limit,
            passed=False, detail=f"SLO {slo}: the candidate's benchmark did not report {slo.metric}",
        )  # fmt: skip
    passed = slo.holds(value)
    verdict = "holds" if passed else "violated"
    return Check(
        kind="slo", metric=slo.metric, rule=str(slo), candidate=value, current=None, limit=slo.limit,
        passed=passed, detail=f"SLO {slo} {verdict}: candidate {slo.metric}={value:g}",
    )  # fmt: skip


def _regression_check(rule: Regression, current: Mapping[str, float], candidate: Mapping[str, float]) -> Check:
    cur, cand = current.get(rule.metric), candidate.get(rule.metric)
    if cand is None:
        return Check(
            kind="regression", metric=rule.metric, rule=str(rule), candidate=None, current=cur, limit=None,
            passed=False, detail=f"regression {rule}: the candidate's benchmark did not report {rule.metric}",
        )  # fmt: skip
    if cur is None:
        return Check(
            kind="regression", metric=rule.metric, rule=str(rule), candidate=cand, current=None, limit=None,
            passed=True, detail=f"regression {rule}: skipped, the current version did not report {rule.metric}",
        )  # fmt: skip
    allowance = rule.allowance(cur)
    if better(rule.metric) == "lower":
        limit = cur + allowance
        passed = cand <= limit
    else:
        limit = cur - allowance
        passed = cand >= limit
    verdict = "within allowance" if passed else "REGRESSED"
    return Check(
        kind="regression", metric=rule.metric, rule=str(rule), candidate=cand, current=cur, limit=limit,
        passed=passed, detail=f"regression {rule} {verdict}: candidate {cand:g} vs current {cur:g} (limit {limit:g})",
    )  # fmt: skip
