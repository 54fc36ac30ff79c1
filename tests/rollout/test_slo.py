"""SLO and regression parsing: the grammar, and errors that name the clause and the parameter."""

from __future__ import annotations

import pytest

from kserve_llmd.errors import ConfigError
from kserve_llmd.rollout.slo import SLO, Regression, parse_regressions, parse_slos


def test_parses_the_documented_example() -> None:
    slos = parse_slos("ttft_p95_ms<=500,itl_p95_ms<=50,error_rate<=0.01")
    assert slos == (
        SLO("ttft_p95_ms", "<=", 500.0),
        SLO("itl_p95_ms", "<=", 50.0),
        SLO("error_rate", "<=", 0.01),
    )
    assert [str(s) for s in slos] == ["ttft_p95_ms<=500", "itl_p95_ms<=50", "error_rate<=0.01"]


def test_every_operator_and_whitespace() -> None:
    slos = parse_slos(" ttft_p50_ms < 10 , output_tokens_per_s >= 100, requests_per_s>1, e2e_p99_ms <= 2e3")
    assert [(s.op, s.limit) for s in slos] == [("<", 10.0), (">=", 100.0), (">", 1.0), ("<=", 2000.0)]
    assert slos[0].holds(9.9)
    assert not slos[0].holds(10.0)
    assert slos[1].holds(100.0)
    assert not slos[1].holds(99.0)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty clause"),
        ("ttft_p95_ms<=500,", "empty clause"),
        ("ttft_p95_ms=500", "cannot parse 'ttft_p95_ms=500'"),
        ("latency<=5", "unknown metric 'latency'"),
        ("ttft_p95_ms<=fast", "'fast' in 'ttft_p95_ms<=fast' is not a number"),
        ("ttft_p95_ms<=inf", "not a finite number"),
        ("error_rate<=0.1,error_rate<=0.2", "appears twice"),
    ],
)
def test_bad_slos_name_the_clause(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=r"^slos: ") as info:
        parse_slos(text)
    assert fragment in info.value.message
    assert info.value.param == "slos"


def test_regressions_relative_and_absolute() -> None:
    rules = parse_regressions("ttft_p95_ms:20%, error_rate:0.005")
    assert rules == (Regression("ttft_p95_ms", 0.2, relative=True), Regression("error_rate", 0.005, relative=False))
    assert rules[0].allowance(100.0) == pytest.approx(20.0)
    assert rules[1].allowance(100.0) == 0.005
    assert [str(r) for r in rules] == ["ttft_p95_ms:20%", "error_rate:0.005"]
    assert parse_regressions("  ") == ()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ttft_p95_ms<=20%", "expected <metric>:<amount>[%]"),
        ("ttft_p95_ms:-5%", "must not be negative"),
        ("foo:5%", "unknown metric 'foo'"),
        ("ttft_p95_ms:5%,ttft_p95_ms:1", "appears twice"),
    ],
)
def test_bad_regressions(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=r"^max_regression: ") as info:
        parse_regressions(text)
    assert fragment in info.value.message
