"""Markdown reports for the KFP UI (``Markdown`` artifacts): one benchmark, and a canary decision with its evidence."""

from __future__ import annotations

from collections.abc import Mapping

from kserve_llmd.rollout.bench import BenchResult
from kserve_llmd.rollout.decision import Decision
from kserve_llmd.rollout.metrics import METRICS

_LEVEL_COLUMNS = ("level", "measured", "failed", "request_throughput", "output_throughput")


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def benchmark_report(result: BenchResult, *, title: str = "Benchmark") -> str:
    lines = [f"# {title}", "", f"Scenario `{result.scenario}` against `{result.url}`.", ""]
    lines += ["| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {_fmt(result.metrics[name])} |" for name in METRICS if name in result.metrics]
    lines += ["", "## Levels", "", "| " + " | ".join(_LEVEL_COLUMNS) + " |", "|" + " --- |" * len(_LEVEL_COLUMNS)]
    for level in result.levels:
        lines.append("| " + " | ".join(_fmt(level.get(c)) for c in _LEVEL_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def canary_report(decision: Decision, context: Mapping[str, object]) -> str:
    verdict = decision.decision.upper()
    lines = [f"# Canary: {verdict}", ""]
    lines += [f"- **{key}**: `{value}`" for key, value in context.items()]
    lines += ["", "## Reasons", ""] + [f"- {reason}" for reason in decision.reasons]
    lines += ["", "## Checks", "", "| kind | rule | current | candidate | limit | result |", "|" + " --- |" * 6]
    for c in decision.checks:
        result = "pass" if c.passed else "**FAIL**"
        lines.append(
            f"| {c.kind} | `{c.rule}` | {_fmt(c.current)} | {_fmt(c.candidate)} | {_fmt(c.limit)} | {result} |"
        )
    lines += ["", "## Headline metrics", "", "| metric | current | candidate |", "| --- | --- | --- |"]
    for name in METRICS:
        if name in decision.current or name in decision.candidate:
            lines.append(f"| {name} | {_fmt(decision.current.get(name))} | {_fmt(decision.candidate.get(name))} |")
    return "\n".join(lines) + "\n"
