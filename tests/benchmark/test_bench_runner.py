"""The runner end to end against the engine double: levels, warm-up exclusion, engine counters, reports, CLI."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
from conftest import EngineDouble

from kserve_llmd.benchmark import scenario as scenario_mod
from kserve_llmd.benchmark.engine_metrics import AffinityCounters, metrics_url, parse_affinity, parse_prefix_counters
from kserve_llmd.benchmark.orchestrate import bench_target
from kserve_llmd.benchmark.report import BenchReport, RunSummary, markdown
from kserve_llmd.benchmark.runner import Runner
from kserve_llmd.benchmark.stats import LevelSummary
from kserve_llmd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _scenario(load: dict[str, object]) -> scenario_mod.Scenario:
    return scenario_mod.parse({
        "name": "t",
        "workload": {"type": "shared-prefix", "num_groups": 2, "prompts_per_group": 3, "system_prompt_len": 20,
                     "question_len": 5, "output_len": 4},
        "load": load, "slo": {"ttft_ms": 10_000}}, "test")


async def test_poisson_ladder_excludes_warmup_and_reads_engine_counters(engine: EngineDouble) -> None:
    scenario = _scenario({"qps": [200, 400], "num_requests": 6, "warmup": 2})
    runner = Runner(engine.url, scenario, rng=random.Random(0), engine_metrics_urls=[engine.url],
                    show_progress=False)
    levels = await runner.run()
    assert [lv.summary.level for lv in levels] == ["qps=200", "qps=400"]
    for lv in levels:
        assert len(lv.records) == 8
        assert sum(r.warmup for r in lv.records) == 2
        s = lv.summary
        assert s.measured == 6
        assert s.completed == 6
        assert s.failed == 0
        assert s.output_tokens == 24
        # the double counts 3 hit tokens of every 25-token prompt, warm-up included (engine counters cannot tell)
        assert s.engine_hit_rate == pytest.approx(3 / 25)
        assert s.client_cached_ratio == pytest.approx(3 / 25)
    assert len(engine.bodies) == 16
    assert engine.bodies[0]["model"] == "double-model"


async def test_warmup_stage_runs_first_and_is_never_reported(engine: EngineDouble) -> None:
    scenario = _scenario({"warmup_stage": {"qps": 400, "duration_s": 0.02}, "qps": [400], "num_requests": 4})
    runner = Runner(engine.url, scenario, rng=random.Random(0), engine_metrics_urls=[engine.url],
                    show_progress=False)
    levels = await runner.run()
    assert runner.warmup_records
    assert all(r.warmup and r.level == "warm-up qps=400" for r in runner.warmup_records)
    assert [lv.summary.level for lv in levels] == ["qps=400"]
    assert levels[0].summary.measured == 4
    assert len(engine.bodies) == len(runner.warmup_records) + 4


def _plan(scenario: scenario_mod.Scenario) -> list[tuple[str, list[str | None]]]:
    plan = Runner("", scenario, rng=random.Random(0), show_progress=False).plan()
    return [(level.label, [r.prompt for r in requests]) for level, requests in plan]


def test_plan_restarts_inference_perf_order_at_every_level_with_per_level_durations() -> None:
    load = {"warmup_stage": {"qps": 1000, "duration_s": 0.01}, "qps": [1000, 1000], "duration_s": [0.01, 0.02]}
    plan = _plan(_scenario(load))
    assert [label for label, _ in plan] == ["warm-up qps=1000", "qps=1000", "qps=1000"]
    (_, warm), (_, first), (_, second) = plan
    assert len(second) > len(first)  # twice the duration, about twice the requests
    n = min(len(warm), len(first), len(second))
    assert warm[:n] == first[:n] == second[:n]  # every stage starts again at the first prompt of one fixed order
    reshuffled = _scenario(load).model_dump()
    reshuffled["workload"]["order"] = "reshuffled"
    continuous = _plan(scenario_mod.parse(reshuffled, "test"))
    assert [len(prompts) for _, prompts in continuous] == [len(warm), len(first), len(second)]  # same arrivals
    assert continuous[0][1][:6] == warm[:6]  # the same first pass of the 2 x 3 prompts
    assert continuous[1][1] != first  # one stream through the run: the next level goes on where it stopped


def test_plan_refuses_closed_loop_levels() -> None:
    with pytest.raises(ValueError, match="closed loop"):
        list(Runner("", _scenario({"concurrency": [2], "num_requests": 3}), rng=random.Random(0)).plan())


async def test_concurrency_level_sends_the_requested_count(engine: EngineDouble) -> None:
    scenario = _scenario({"concurrency": [3], "num_requests": 7, "warmup": 1})
    levels = await Runner(engine.url, scenario, rng=random.Random(0), show_progress=False,
                          headers={"x-llmd-version": "v2"}).run()
    assert all(h["x-llmd-version"] == "v2" for h in engine.headers)
    assert len(levels[0].records) == 8
    assert levels[0].summary.measured == 7
    assert levels[0].summary.concurrency == 3
    assert levels[0].summary.engine_hit_rate is None


async def test_bench_target_writes_every_output(engine: EngineDouble, tmp_path: Path) -> None:
    scenario = _scenario({"qps": [500], "num_requests": 4})
    report = await bench_target(engine.url, scenario, out_dir=tmp_path, stem="bench_t", command="kserve-llmd bench",
                                show_progress=False)
    assert report.runs[0].levels[0].completed == 4
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"bench_t.{ext}").stat().st_size > 0
    lines = (tmp_path / "bench_t.requests.jsonl").read_bytes().splitlines()
    assert len(lines) == 4
    assert orjson.loads(lines[0])["config"] == "target"
    again = BenchReport.model_validate(orjson.loads((tmp_path / "bench_t.json").read_bytes()))
    assert again.runs[0].levels[0].output_tokens == 16


def test_comparison_is_against_round_robin_at_the_top_of_the_ladder() -> None:
    def level(tput: float, ttft: float) -> LevelSummary:
        s = LevelSummary(level="qps=8", output_throughput=tput)
        s.ttft_ms.p90 = ttft
        return s

    report = BenchReport(scenario="s", runs=[RunSummary(config="precise-prefix", levels=[level(200, 100)]),
                                             RunSummary(config="round-robin", levels=[level(100, 800)])])
    report.compare()
    assert report.baseline == "round-robin"
    precise = report.comparison[0]
    assert precise.output_throughput_ratio == pytest.approx(2.0)
    assert precise.ttft_p90_ratio == pytest.approx(8.0)
    assert "| precise-prefix | 2.00× | 8.00× |" in markdown(report)


def test_prometheus_counters_are_summed_over_label_sets() -> None:
    text = ('vllm:prefix_cache_hits_total{engine="0"} 5\nvllm:prefix_cache_hits_total{engine="1"} 7\n'
            'vllm:prefix_cache_queries_total{engine="0"} 10\nvllm:prefix_cache_queries_total{engine="1"} 14\n')
    counters = parse_prefix_counters(text)
    assert (counters.hits, counters.queries, counters.hit_rate) == (12, 24, 0.5)
    assert metrics_url("http://h:1") == "http://h:1/metrics"


def test_router_affinity_counters_are_read_by_decision_and_absent_elsewhere() -> None:
    text = ('kserve_llmd_router_prefix_affinity_decisions_total{decision="kept"} 40.0\n'
            'kserve_llmd_router_prefix_affinity_decisions_total{decision="yielded"} 3.0\n')
    before = parse_affinity(text.replace("40.0", "10.0").replace("3.0", "1.0"))
    after = parse_affinity(text)
    assert after is not None
    assert before is not None
    assert after - before == AffinityCounters(kept=30.0, yielded=2.0)
    assert parse_affinity('vllm:prefix_cache_hits_total{engine="0"} 5\n') is None  # an engine, or another router
    assert metrics_url("http://h:1/m") == "http://h:1/m"


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks" / "scenarios").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_committed_scenario_loads(path: Path) -> None:
    scenario = scenario_mod.load(str(path))
    assert scenario.name == path.stem
    assert scenario.load.levels()
    assert scenario.published


def test_scenario_overrides_and_errors() -> None:
    base = _scenario({"qps": [1], "duration_s": 5})
    over = scenario_mod.with_overrides(base, concurrency=[4], num_requests=10, warmup=2, slo_itl_ms=50)
    assert over.load.qps is None
    assert over.load.concurrency == [4]
    assert over.load.num_requests == 10
    assert over.load.duration_s is None
    assert over.load.warmup == 2
    assert over.slo.itl_ms == 50
    with pytest.raises(ConfigError, match="load"):
        scenario_mod.parse({"name": "x", "workload": {"type": "random", "prompt_len": 1, "output_len": 1},
                            "load": {"qps": [1]}}, "x")
    with pytest.raises(ConfigError, match="unknown scenario 'nope'"):
        scenario_mod.load("nope")
    with pytest.raises(ConfigError, match="2 durations for 3 levels"):
        _scenario({"qps": [1, 2, 3], "duration_s": [5, 6]})
    with pytest.raises(ConfigError, match="warmup_stage"):
        _scenario({"arrival": "trace", "warmup_stage": {"qps": 1, "duration_s": 1}})
    per_level = _scenario({"qps": [1, 2], "duration_s": [5, 6]})
    assert [lv.duration_s for lv in per_level.load.levels()] == [5, 6]
    assert [lv.duration_s for lv in scenario_mod.with_overrides(per_level, duration_s=9).load.levels()] == [9, 9]
    assert [lv.duration_s for lv in scenario_mod.with_overrides(per_level, duration_s=[9]).load.levels()] == [9, 9]
    longer = scenario_mod.with_overrides(per_level, qps=[1, 2, 4], duration_s=[5, 6, 7])
    assert [(lv.qps, lv.duration_s) for lv in longer.load.levels()] == [(1, 5), (2, 6), (4, 7)]
    with pytest.raises(ConfigError, match="2 durations for 3 levels"):
        scenario_mod.with_overrides(per_level, qps=[1, 2, 4])  # the scenario's per-level list no longer fits


def test_demo_plan_uses_the_packaged_scenario_and_lets_flags_override() -> None:
    from kserve_llmd.benchmark.demo import demo_plan

    scenario, spec, configs = demo_plan(None, None, None, None)
    assert scenario.name == "demo"
    assert spec.engines == 4
    assert spec.time_scale == 10
    assert configs[0] == "round-robin"
    assert "precise-prefix" in configs
    _, spec, configs = demo_plan(2, "tiny", 0.0, ["round-robin"])
    assert (spec.engines, spec.profile, spec.time_scale, configs) == (2, "tiny", 0.0, ["round-robin"])
