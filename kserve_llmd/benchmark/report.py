"""The report of a run: summary JSON, markdown table, PNG plots, per-request JSONL.

Files written by ``write`` into the output folder, ``<stem>`` being ``bench_<scenario>`` by default:

- ``<stem>.json``: a ``BenchReport`` (every level of every configuration, the command, the environment);
- ``<stem>.md``: the same as tables, plus the comparison against the baseline at the top of the ladder;
- ``<stem>.png``: TTFT p90 vs load and output throughput vs load, one line per configuration;
- ``<stem>.requests.jsonl``: one line per request (``RequestRecord.to_json`` plus ``config``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from kserve_llmd.benchmark.records import RequestRecord
from kserve_llmd.benchmark.stats import LevelSummary


class RunSummary(BaseModel):
    config: str
    target: str = ""
    levels: list[LevelSummary] = []


class Comparison(BaseModel):
    """One configuration against the baseline at the top level of the ladder ("at saturation")."""

    config: str
    level: str
    output_throughput_ratio: float | None  # config / baseline
    ttft_p90_ratio: float | None  # baseline / config (> 1: config is faster)
    engine_hit_rate: float | None
    client_cached_ratio: float | None


class BenchReport(BaseModel):
    scenario: str
    description: str = ""
    published: str = ""
    command: str = ""
    created: str = ""
    environment: dict[str, Any] = {}
    slo: dict[str, float | None] = {}
    baseline: str = ""
    runs: list[RunSummary] = []
    comparison: list[Comparison] = []
    wall_seconds: float | None = None

    def compare(self, baseline: str = "round-robin") -> None:
        """Fill ``comparison`` against ``baseline`` (or the first run when there is no such configuration)."""
        if not self.runs:
            return
        base = next((r for r in self.runs if r.config == baseline), self.runs[0])
        self.baseline = base.config
        self.comparison = []
        if not base.levels:
            return
        top = base.levels[-1]
        for run in self.runs:
            level = next((lv for lv in run.levels if lv.level == top.level), None)
            if level is None:
                continue
            self.comparison.append(Comparison(
                config=run.config, level=level.level,
                output_throughput_ratio=_ratio(level.output_throughput, top.output_throughput),
                ttft_p90_ratio=_ratio(top.ttft_ms.p90, level.ttft_ms.p90),
                engine_hit_rate=level.engine_hit_rate, client_cached_ratio=level.client_cached_ratio))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _f(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _yields(level: LevelSummary) -> str:
    if level.affinity_yielded is None or level.affinity_kept is None:
        return "–"
    return f"{level.affinity_yielded}/{level.affinity_yielded + level.affinity_kept}"


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def markdown(report: BenchReport) -> str:
    lines = [f"# Benchmark: {report.scenario}", ""]
    if report.description:
        lines += [report.description.strip(), ""]
    if report.published:
        lines += [f"Published reference: {report.published.strip()}", ""]
    if report.command:
        lines += ["Command:", "", "```bash", report.command, "```", ""]
    if report.environment:
        lines += ["Environment: " + ", ".join(f"{k}={v}" for k, v in report.environment.items()), ""]
    slo = ", ".join(f"{k} ≤ {v:g}" for k, v in report.slo.items() if v is not None)
    affinity = any(lv.affinity_yielded is not None for run in report.runs for lv in run.levels)
    lines += [
        f"SLOs for goodput: {slo or 'none (goodput = completed requests/s)'}. Latencies in ms; ITL is per SSE chunk, "
        "TPOT per output token; engine hit = Δ prefix_cache_hits / Δ prefix_cache_queries from the engines' "
        "/metrics; cached = Σ usage.cached_tokens / Σ prompt_tokens."
        + (" Yields = the router's prefix-affinity-filter choices that left the endpoints caching the prompt for "
           "load, of all its choices (from the router's /metrics)." if affinity else ""),
        "",
        "| config | load | ok/fail | req/s | out tok/s | goodput | TTFT p50 | TTFT p90 | TTFT p99 | ITL p50 | "
        "ITL p90 | TPOT p50 | TPOT p90 | E2E p90 | engine hit | cached |" + (" yields |" if affinity else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if affinity else ""),
    ]
    for run in report.runs:
        for lv in run.levels:
            lines.append(
                f"| {run.config} | {lv.level} | {lv.completed}/{lv.failed} | {_f(lv.request_throughput, 2)} | "
                f"{_f(lv.output_throughput)} | {_f(lv.goodput, 2)} | {_f(lv.ttft_ms.p50)} | {_f(lv.ttft_ms.p90)} | "
                f"{_f(lv.ttft_ms.p99)} | {_f(lv.itl_ms.p50, 1)} | {_f(lv.itl_ms.p90, 1)} | {_f(lv.tpot_ms.p50, 1)} | "
                f"{_f(lv.tpot_ms.p90, 1)} | {_f(lv.e2e_ms.p90)} | {_pct(lv.engine_hit_rate)} | "
                f"{_pct(lv.client_cached_ratio)} |" + (f" {_yields(lv)} |" if affinity else ""))
    if report.comparison and len(report.runs) > 1:
        lines += ["", f"At the top of the ladder ({report.comparison[0].level}), against {report.baseline}:", "",
                  "| config | output throughput | TTFT p90 speed-up | engine hit | cached |", "|---|---|---|---|---|"]
        for c in report.comparison:
            lines.append(f"| {c.config} | {_x(c.output_throughput_ratio)} | {_x(c.ttft_p90_ratio)} | "
                         f"{_pct(c.engine_hit_rate)} | {_pct(c.client_cached_ratio)} |")
    errors = [(run.config, lv.level, e, n) for run in report.runs for lv in run.levels for e, n in lv.errors.items()]
    if errors:
        lines += ["", "Errors:", ""] + [f"- {c} {lv}: {n} × {e}" for c, lv, e, n in errors]
    if report.wall_seconds is not None:
        lines += ["", f"Wall time: {report.wall_seconds:.1f} s."]
    return "\n".join(lines) + "\n"


def plot(report: BenchReport, path: Path) -> None:
    """TTFT p90 vs load and output throughput vs load, one line per configuration (matplotlib, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    figure = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    ttft_ax, tput_ax = figure.subplots(1, 2)
    concurrency = any(lv.concurrency is not None for run in report.runs for lv in run.levels)
    xlabel = "concurrency" if concurrency else "offered load (QPS, Poisson)"
    for run in report.runs:
        xs = [lv.x for lv in run.levels]
        ttft_ax.plot(xs, [lv.ttft_ms.p90 or float("nan") for lv in run.levels], marker="o", label=run.config)
        tput_ax.plot(xs, [lv.output_throughput for lv in run.levels], marker="o", label=run.config)
    ttft_ax.set(title="TTFT p90", xlabel=xlabel, ylabel="ms", yscale="log")
    tput_ax.set(title="Output throughput", xlabel=xlabel, ylabel="tokens / s")
    for ax in (ttft_ax, tput_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle(f"{report.scenario}: {', '.join(f'{k}={v}' for k, v in report.environment.items())}",
                    fontsize="small")
    figure.tight_layout()
    figure.savefig(path)


def write_records(path: Path, config: str, records: Iterable[RequestRecord], append: bool = True) -> None:
    with path.open("ab" if append else "wb") as out:
        for record in records:
            out.write(orjson.dumps({"config": config, **record.to_json()}) + b"\n")


def write(report: BenchReport, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (out_dir / f"{stem}.{ext}" for ext in ("json", "md", "png"))
    json_path.write_bytes(orjson.dumps(report.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n")
    md_path.write_text(markdown(report))
    plot(report, png_path)
    return [json_path, md_path, png_path]
