"""Parse the two rules a canary is judged by: absolute SLOs and the allowed regression against the current version.

SLOs (``--slos``), comma-separated ``<metric><op><number>`` clauses, ``op`` one of ``<=  <  >=  >``::

    ttft_p95_ms<=500,itl_p95_ms<=50,error_rate<=0.01

Allowed regression (``--max-regression``), comma-separated ``<metric>:<amount>`` clauses; ``20%`` is relative to the
current version's value, a plain number is an absolute allowance in the metric's unit::

    ttft_p95_ms:20%,itl_p95_ms:20%,error_rate:0.005

"Worse" follows the metric's direction (``metrics.METRICS``): higher latency or error rate, lower throughput.
Every parse error is a ``ConfigError`` naming the clause and the parameter, so a pipeline step fails with a message a
user can act on.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from kserve_llmd.errors import ConfigError
from kserve_llmd.rollout.metrics import METRICS

Op = Literal["<=", "<", ">=", ">"]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}
_SLO_RE = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=|<|>)\s*([^\s]+)\s*$")
_REGRESSION_RE = re.compile(r"^\s*([a-z0-9_]+)\s*:\s*([^\s%]+)\s*(%?)\s*$")


@dataclass(frozen=True, slots=True)
class SLO:
    """One absolute objective: ``metric op limit`` must hold for the candidate."""

    metric: str
    op: Op
    limit: float

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.limit)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.limit:g}"


@dataclass(frozen=True, slots=True)
class Regression:
    """How much worse than the current version the candidate may be on one metric."""

    metric: str
    amount: float
    relative: bool  # True: ``amount`` is a fraction of the current value (20% → 0.2)

    def allowance(self, current: float) -> float:
        return abs(current) * self.amount if self.relative else self.amount

    def __str__(self) -> str:
        return f"{self.metric}:{self.amount * 100:g}%" if self.relative else f"{self.metric}:{self.amount:g}"


def parse_slos(text: str, *, param: str = "slos") -> tuple[SLO, ...]:
    """Parse ``ttft_p95_ms<=500,error_rate<=0.01``; at least one clause, each metric at most once."""
    slos = tuple(_parse_slo(clause, param) for clause in _clauses(text, param))
    _no_duplicates([s.metric for s in slos], param)
    return slos


def parse_regressions(text: str, *, param: str = "max_regression") -> tuple[Regression, ...]:
    """Parse ``ttft_p95_ms:20%,error_rate:0.005``; an empty string means "no regression rule"."""
    if not text.strip():
        return ()
    rules = tuple(_parse_regression(clause, param) for clause in _clauses(text, param))
    _no_duplicates([r.metric for r in rules], param)
    return rules


def _clauses(text: str, param: str) -> list[str]:
    clauses = [c for c in text.split(",")]
    if not text.strip() or any(not c.strip() for c in clauses):
        raise ConfigError(f"{param}: empty clause in {text!r} (expected comma-separated clauses)", param=param)
    return clauses


def _parse_slo(clause: str, param: str) -> SLO:
    match = _SLO_RE.match(clause)
    if match is None:
        raise ConfigError(
            f"{param}: cannot parse {clause.strip()!r}: expected <metric><op><number>, op one of <= < >= >, "
            f"e.g. 'ttft_p95_ms<=500'",
            param=param,
        )
    metric, op, raw = match.groups()
    _known_metric(metric, clause, param)
    return SLO(metric=metric, op=op, limit=_number(raw, clause, param))  # type: ignore[arg-type]


def _parse_regression(clause: str, param: str) -> Regression:
    match = _REGRESSION_RE.match(clause)
    if match is None:
        raise ConfigError(
            f"{param}: cannot parse {clause.strip()!r}: expected <metric>:<amount>[%], e.g. 'ttft_p95_ms:20%'",
            param=param,
        )
    metric, raw, percent = match.groups()
    _known_metric(metric, clause, param)
    amount = _number(raw, clause, param)
    if amount < 0:
        raise ConfigError(f"{param}: {clause.strip()!r}: the allowance must not be negative", param=param)
    return Regression(metric=metric, amount=amount / 100 if percent else amount, relative=bool(percent))


def _known_metric(metric: str, clause: str, param: str) -> None:
    if metric not in METRICS:
        known = ", ".join(sorted(METRICS))
        raise ConfigError(f"{param}: unknown metric {metric!r} in {clause.strip()!r} (known: {known})", param=param)


def _number(raw: str, clause: str, param: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{param}: {raw!r} in {clause.strip()!r} is not a number", param=param) from None
    if not math.isfinite(value):
        raise ConfigError(f"{param}: {raw!r} in {clause.strip()!r} is not a finite number", param=param)
    return value


def _no_duplicates(metrics: list[str], param: str) -> None:
    seen: set[str] = set()
    for metric in metrics:
        if metric in seen:
            raise ConfigError(f"{param}: metric {metric!r} appears twice", param=param)
        seen.add(metric)
