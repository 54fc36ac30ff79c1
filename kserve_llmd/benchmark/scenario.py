"""A scenario: a workload, a load (QPS ladder or concurrency), SLOs and a seed, read from YAML.

```yaml
name: shared-prefix-small
workload: {type: shared-prefix, num_groups: 32, prompts_per_group: 32, system_prompt_len: 2048,
           question_len: 256, output_len: 256}
load: {qps: [1, 2, 4], duration_s: 30, warmup: 5}     # or concurrency: [8]; or num_requests: 200
slo: {ttft_ms: 2000, itl_ms: 100}
seed: 0
```

``duration_s`` is one number for every level or a list with one per level (inference-perf's per-stage
``duration``). ``warmup_stage: {qps, duration_s}`` is a Poisson stage sent before the ladder and never reported
(llm-d's benchmarks open with one that seats the working set in the caches); ``warmup`` instead leaves the first N
requests of EVERY level out of the statistics.

Names (``--scenario shared-prefix``) resolve to ``<dir>/<name>.yaml`` in ``./benchmarks/scenarios``, then in the
checkout's ``benchmarks/scenarios``, then in the package (``demo``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, model_validator

from kserve_llmd.benchmark.workloads import WorkloadSpec
from kserve_llmd.errors import ConfigError


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WarmupStage(_Base):
    """Poisson arrivals at ``qps`` for ``duration_s`` before the ladder; sent like a level, never reported."""

    qps: PositiveFloat
    duration_s: PositiveFloat


class LoadSpec(_Base):
    qps: list[float] | None = None
    concurrency: list[int] | None = None
    arrival: Literal["poisson", "trace"] = "poisson"
    duration_s: PositiveFloat | list[PositiveFloat] | None = None  # one for all levels, or one per level
    num_requests: int | None = Field(default=None, ge=1)
    warmup: int = Field(default=0, ge=0)  # per level: the first N requests of each level are not measured
    warmup_stage: WarmupStage | None = None
    request_timeout_s: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> LoadSpec:
        if self.arrival == "trace":
            if isinstance(self.duration_s, list) or self.warmup_stage is not None:
                raise ValueError("a trace replay takes one load.duration_s and no load.warmup_stage")
            return self
        if (self.qps is None) == (self.concurrency is None):
            raise ValueError("give exactly one of load.qps (a Poisson QPS ladder) or load.concurrency")
        if self.qps is not None and (not self.qps or min(self.qps) <= 0):
            raise ValueError("load.qps must be a non-empty list of positive rates")
        if self.concurrency is not None and (not self.concurrency or min(self.concurrency) < 1):
            raise ValueError("load.concurrency must be a non-empty list of integers ≥ 1")
        if self.duration_s is None and self.num_requests is None:
            raise ValueError("give load.duration_s or load.num_requests (or both: the first reached stops a level)")
        levels = len(self.qps or self.concurrency or ())
        if isinstance(self.duration_s, list) and len(self.duration_s) != levels:
            raise ValueError(f"load.duration_s lists {len(self.duration_s)} durations for {levels} levels: "
                             "give one per level, or one number for all (--duration)")
        return self

    def _durations(self, n: int) -> list[float | None]:
        if isinstance(self.duration_s, list):
            return list(self.duration_s)
        return [self.duration_s] * n

    def levels(self) -> list[Level]:
        if self.arrival == "trace":
            return [Level("trace", duration_s=self._durations(1)[0])]
        if self.qps is not None:
            return [Level(f"qps={q:g}", qps=q, duration_s=d) for q, d in zip(self.qps, self._durations(len(self.qps)),
                                                                              strict=True)]
        assert self.concurrency is not None
        return [Level(f"concurrency={c}", concurrency=c, duration_s=d)
                for c, d in zip(self.concurrency, self._durations(len(self.concurrency)), strict=True)]

    def warmup_level(self) -> Level | None:
        """The warm-up stage as an unmeasured level, or None."""
        stage = self.warmup_stage
        if stage is None:
            return None
        return Level(f"warm-up qps={stage.qps:g}", qps=stage.qps, duration_s=stage.duration_s, measured=False)


class SLO(_Base):
    ttft_ms: float | None = Field(default=None, gt=0)
    itl_ms: float | None = Field(default=None, gt=0)  # compared with the request's TPOT (mean time per output token)


class ClusterDefaults(_Base):
    """What ``bench --compare`` starts for this scenario unless the command line says otherwise."""

    engines: int = Field(default=4, ge=1)
    profile: str = "llama-8b-h100"
    time_scale: float = Field(default=1.0, ge=0)
    sim_args: list[str] = []
    router_args: list[str] = []
    configs: list[str] = ["round-robin", "least-load", "approx-prefix", "precise-prefix"]


class Scenario(_Base):
    name: str
    description: str = ""
    published: str = ""  # how this maps to the published reference workload
    workload: WorkloadSpec
    load: LoadSpec
    slo: SLO = SLO()
    seed: int = 0
    model: str | None = None  # default: the first id of the target's /v1/models
    cluster: ClusterDefaults = ClusterDefaults()


@dataclass(frozen=True, slots=True)
class Level:
    """One step of the ladder: a Poisson rate, a fixed concurrency, or the trace's own timing."""

    label: str
    qps: float | None = None
    concurrency: int | None = None
    duration_s: float | None = None  # arrivals stop after this long (None: only num_requests ends the level)
    measured: bool = True  # False for the warm-up stage: every request is warm-up and nothing is summarised

    @property
    def x(self) -> float:
        """The x-axis value in plots."""
        return self.qps if self.qps is not None else float(self.concurrency or 0)


def scenario_dirs() -> list[Path]:
    """Where names are looked up, in order: ./benchmarks/scenarios, the checkout's, the package's (``demo``)."""
    here = Path(__file__).resolve().parent
    return [Path.cwd() / "benchmarks" / "scenarios", here.parents[1] / "benchmarks" / "scenarios", here / "scenarios"]


def resolve(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"scenario file not found: {path}", param="scenario")
        return path
    for folder in scenario_dirs():
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in scenario_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    raise ConfigError(f"unknown scenario {name_or_path!r}; known: {', '.join(known) or 'none'}", param="scenario")


def parse(data: object, source: str) -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"scenario {source}: {problems}", param="scenario") from None


def load(name_or_path: str) -> Scenario:
    path = resolve(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"scenario {path}: not YAML: {exc}", param="scenario") from None
    return parse(data, str(path))


def with_overrides(scenario: Scenario, *, qps: list[float] | None = None, concurrency: list[int] | None = None,
                   duration_s: float | list[float] | None = None, num_requests: int | None = None,
                   warmup: int | None = None, slo_ttft_ms: float | None = None, slo_itl_ms: float | None = None,
                   seed: int | None = None, model: str | None = None) -> Scenario:
    """The scenario with command-line overrides applied, validated again as a whole."""
    data = scenario.model_dump()
    load = data["load"]
    if qps is not None:
        load.update(qps=qps, concurrency=None, arrival="poisson")
    if concurrency is not None:
        load.update(concurrency=concurrency, qps=None, arrival="poisson")
    if isinstance(duration_s, list) and len(duration_s) == 1:
        duration_s = duration_s[0]
    if duration_s is not None:
        load.update(duration_s=duration_s, num_requests=None if num_requests is None else num_requests)
    if num_requests is not None:
        load.update(num_requests=num_requests, duration_s=duration_s)
    if warmup is not None:
        load["warmup"] = warmup
    if slo_ttft_ms is not None:
        data["slo"]["ttft_ms"] = slo_ttft_ms
    if slo_itl_ms is not None:
        data["slo"]["itl_ms"] = slo_itl_ms
    if seed is not None:
        data["seed"] = seed
    if model is not None:
        data["model"] = model
    return parse(data, scenario.name)
