"""Hit-rate ceilings: the unlimited-cache arithmetic by hand, and the simulator's LRU under a cyclic order."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from kserve_llmd.benchmark import scenario as scenario_mod
from kserve_llmd.benchmark.ceiling import Timing, _flag, ceilings, load_timings, main
from kserve_llmd.benchmark.runner import Runner


def _scenario(order: str) -> scenario_mod.Scenario:
    # 2 groups x 2 prompts of 32 shared + 32 own tokens (4 blocks of 16); 16 requests = 4 passes, one level
    return scenario_mod.parse({
        "name": "c",
        "workload": {"type": "shared-prefix", "num_groups": 2, "prompts_per_group": 2, "system_prompt_len": 32,
                     "question_len": 32, "output_len": 1, "order": order},
        "load": {"qps": [1000], "num_requests": 16}}, "test")


def test_unlimited_ceiling_matches_the_block_arithmetic() -> None:
    (level,) = ceilings(_scenario("inference-perf"), engines=2, kv_blocks=1000)
    # pass 1: each group's first prompt misses, its second hits the 2 shared blocks; later passes hit 3 blocks
    # (a 64-token prompt can hit at most (64 - 1) // 16 = 3 blocks: vLLM recomputes the last token)
    hits = 2 * 0 + 2 * 32 + 12 * 48
    assert level.requests == 16
    assert level.unlimited == pytest.approx(hits / (16 * 64))
    assert level.partition == pytest.approx(level.unlimited)  # everything fits: placement loses nothing


def test_a_cache_smaller_than_the_cycle_thrashes_under_the_fixed_order() -> None:
    # one engine holding 2 groups' 2 shared + 2 x 2 own blocks = 12 blocks, with 10: LRU evicts each question's
    # blocks just before the fixed order comes back to it, so only the shared blocks still hit
    (fixed,) = ceilings(_scenario("inference-perf"), engines=1, kv_blocks=10)
    assert fixed.partition == pytest.approx((2 * 32 + 12 * 32) / (16 * 64))
    (reshuffled,) = ceilings(_scenario("reshuffled"), engines=1, kv_blocks=10)
    assert reshuffled.partition >= fixed.partition


def test_flag_reads_both_spellings_and_main_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert _flag(["--kv-cache-size", "64", "--block-size=32"], "--kv-cache-size") == "64"
    assert _flag(["--kv-cache-size", "64", "--block-size=32"], "--block-size") == "32"
    assert _flag([], "--block-size") is None
    main(["demo", "--engines", "2"])
    out = capsys.readouterr().out
    assert out.startswith("demo: 2 engines x 640 blocks of 16 tokens")
    assert "| qps=24 |" in out


def test_groups_per_engine_deals_unevenly_and_reports_each_engines_load() -> None:
    (one,) = ceilings(_scenario("inference-perf"), engines=1, kv_blocks=10)
    (piled,) = ceilings(_scenario("inference-perf"), engines=2, kv_blocks=10, groups_per_engine=(2, 0))
    assert piled.per_engine == (16, 0)
    assert piled.partition == pytest.approx(one.partition)  # both groups on one 10-block engine: it thrashes alike
    (even,) = ceilings(_scenario("inference-perf"), engines=2, kv_blocks=10)
    assert even.per_engine == (8, 8)
    assert even.partition > piled.partition  # one group per engine fits
    with pytest.raises(ValueError, match="places 1 groups"):
        ceilings(_scenario("inference-perf"), engines=2, kv_blocks=10, groups_per_engine=(1, 0))


def test_main_prints_the_uneven_deal_and_the_load_it_costs(capsys: pytest.CaptureFixture[str]) -> None:
    main(["demo", "--groups-per-engine", "10,8,8,6"])
    out = capsys.readouterr().out
    assert "groups dealt 10/8/8/6, one at a time" in out
    row = next(line for line in out.splitlines() if line.startswith("| qps=24 |"))
    counts = [int(n) for n in row.split("|")[5].split(",")[0].split("/")]
    assert len(counts) == 4
    assert counts[0] > counts[3]  # 10 groups draw more requests than 6


def _run_file(path: Path, level: str, spans: dict[int, tuple[float, float]],
              routed: dict[int, str] | None = None) -> Path:
    """A ``*.requests.jsonl`` with one configuration's requests: index -> (start_s, end_s), first token at start;
    ``routed``: index -> the endpoint the router picked."""
    rows = [{"config": "c", "level": level, "index": i, "start_s": start, "ttft_ms": 0.0,
             "e2e_ms": (end - start) * 1000, "routed_to": (routed or {}).get(i)} for i, (start, end) in spans.items()]
    rows.append({"config": "other", "level": level, "index": 0, "start_s": 0.0, "ttft_ms": None, "e2e_ms": None})
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


def test_on_a_timeline_running_requests_pin_their_blocks(tmp_path: Path) -> None:
    # one engine of 10 blocks, the 16-request cyclic order that thrashes one at a time (see above)
    scenario = _scenario("inference-perf")
    (level,) = ceilings(scenario, engines=1, kv_blocks=10)
    label = level.level
    one_at_a_time = {i: (float(i), i + 0.5) for i in range(16)}
    (same,) = ceilings(scenario, engines=1, kv_blocks=10,
                       timings=load_timings(_run_file(tmp_path / "a.jsonl", label, one_at_a_time), "c"))
    assert same.partition == pytest.approx(level.partition)  # the same order, served alike
    # every fourth request runs until just before its prompt comes back: freed last, it is still cached then
    long_runs = {i: (float(i), i + 3.9 if i % 4 == 0 else i + 0.5) for i in range(16)}
    (pinned,) = ceilings(scenario, engines=1, kv_blocks=10,
                         timings=load_timings(_run_file(tmp_path / "b.jsonl", label, long_runs), "c"))
    assert pinned.partition > level.partition


def test_timings_must_cover_the_run(tmp_path: Path) -> None:
    scenario = _scenario("inference-perf")
    (level,) = ceilings(scenario, engines=1, kv_blocks=10)
    partial = load_timings(_run_file(tmp_path / "p.jsonl", level.level, {0: (0.0, 1.0)}), "c")
    assert partial == {(level.level, 0): Timing(0.0, 1.0)}
    with pytest.raises(ValueError, match=r"request 1 of level .* did not complete"):
        ceilings(scenario, engines=1, kv_blocks=10, timings=partial)
    with pytest.raises(ValueError, match="no completed request of configuration 'other'"):
        load_timings(tmp_path / "p.jsonl", "other")


def test_main_wants_timings_and_config_together(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--timings", "run.requests.jsonl"])
    assert exit_info.value.code == 2
    assert "--timings and --config go together" in capsys.readouterr().err


def test_main_turns_bad_timings_into_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, text in (("missing.jsonl", None), ("junk.jsonl", "not json\n"), ("other.jsonl", '{"config": "x"}\n')):
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(SystemExit) as exit_info:
            main(["demo", "--timings", str(path), "--config", "precise-prefix"])
        assert exit_info.value.code == 2
        assert f"--timings {path}" in capsys.readouterr().err
    partial = _run_file(tmp_path / "partial.jsonl", "qps=24", {0: (0.0, 1.0)})  # the demo's level, one request only
    with pytest.raises(SystemExit):
        main(["demo", "--timings", str(partial), "--config", "c"])
    assert "did not complete in that run" in capsys.readouterr().err


def test_the_runs_own_placement_replaces_the_deal(tmp_path: Path) -> None:
    scenario = _scenario("inference-perf")
    (even,) = ceilings(scenario, engines=2, kv_blocks=1000)
    (level, requests), = Runner("", scenario, rng=random.Random(scenario.seed), show_progress=False).plan()
    spans = {r.index: (float(r.index), r.index + 0.5) for r in requests}
    group_engine = {g: f"http://e{i}" for i, g in enumerate(sorted({r.group or "" for r in requests}))}
    # each group kept on one engine, as the even deal does: the same hits, no group split
    kept = load_timings(_run_file(tmp_path / "kept.jsonl", level.label, spans,
                                  {r.index: group_engine[r.group or ""] for r in requests}), "c")
    (same,) = ceilings(scenario, engines=2, kv_blocks=1000, timings=kept, run_placement=True)
    assert same.partition == pytest.approx(even.partition)
    assert same.split_groups == 0
    assert sorted(same.per_engine) == [8, 8]
    # requests alternating between the engines whatever their group: both groups split, the shared blocks computed
    # twice, fewer hits
    alternating = load_timings(_run_file(tmp_path / "alt.jsonl", level.label, spans,
                                         {r.index: f"http://e{r.index % 2}" for r in requests}), "c")
    (split,) = ceilings(scenario, engines=2, kv_blocks=1000, timings=alternating, run_placement=True)
    assert split.split_groups == 2
    assert split.partition < even.partition


def test_the_runs_placement_needs_every_requests_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = _scenario("inference-perf")
    (level,) = ceilings(scenario, engines=1, kv_blocks=10)
    unrouted = load_timings(_run_file(tmp_path / "u.jsonl", level.level, {i: (float(i), i + 0.5) for i in range(16)}),
                            "c")
    with pytest.raises(ValueError, match="did not record where each request went"):
        ceilings(scenario, engines=1, kv_blocks=10, timings=unrouted, run_placement=True)
    three = load_timings(_run_file(tmp_path / "3.jsonl", level.level, {i: (float(i), i + 0.5) for i in range(16)},
                                   {i: f"http://e{i % 3}" for i in range(16)}), "c")
    with pytest.raises(ValueError, match="went to 3 endpoints; the scenario has 2 engines"):
        ceilings(scenario, engines=2, kv_blocks=10, timings=three, run_placement=True)
    with pytest.raises(SystemExit):
        main(["demo", "--placement", "run"])
    assert "--placement run needs --timings" in capsys.readouterr().err


def test_on_a_timeline_a_request_that_does_not_fit_ends_the_one_closest_to_its_end(tmp_path: Path) -> None:
    # one engine of 5 blocks: a 64-token prompt takes 4, so two prompts never fit together. Requests 0 and 1 run
    # long: request 1 arriving ends 0 early, request 2 ends 1, and the replay goes on instead of failing
    scenario = _scenario("inference-perf")
    (level,) = ceilings(scenario, engines=1, kv_blocks=5)
    spans = {i: (float(i), i + 0.5) for i in range(16)}
    spans[0], spans[1] = (0.0, 90.0), (1.0, 50.0)
    (replayed,) = ceilings(scenario, engines=1, kv_blocks=5,
                           timings=load_timings(_run_file(tmp_path / "long.jsonl", level.level, spans), "c"))
    assert replayed.ended_early == 2
    assert replayed.requests == 16
    with pytest.raises(ValueError, match="does not fit in 3 blocks"):  # alone too big: still an error
        ceilings(scenario, engines=1, kv_blocks=3,
                 timings=load_timings(_run_file(tmp_path / "long.jsonl", level.level, spans), "c"))
