"""The scheduling framework and every plugin, in process (no HTTP): formulas, clamping, tie-breaks, config errors."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

import pytest

from kserve_llmd.errors import ConfigError
from kserve_llmd.router.app import Router
from kserve_llmd.router.config import RouterConfig, load_preset, parse_scheduler_config, preset_names
from kserve_llmd.router.discovery import StaticDiscovery
from kserve_llmd.router.endpoints import PrefillHold
from kserve_llmd.router.interfaces import Endpoint, EngineMetrics, PrefixMatch, RequestContext
from kserve_llmd.router.plugins._base import NEUTRAL, PluginDeps
from kserve_llmd.router.plugins.kv_cache_utilization_scorer import KVCacheUtilizationScorer
from kserve_llmd.router.plugins.load_aware_scorer import LoadAwareScorer
from kserve_llmd.router.plugins.load_aware_scorer import Parameters as LoadParams
from kserve_llmd.router.plugins.lora_affinity_scorer import LoraAffinityScorer
from kserve_llmd.router.plugins.max_score_picker import MaxScorePicker
from kserve_llmd.router.plugins.max_score_picker import Parameters as MaxParams
from kserve_llmd.router.plugins.no_hit_lru_scorer import NoHitLRUScorer
from kserve_llmd.router.plugins.no_hit_lru_scorer import Parameters as LRUParams
from kserve_llmd.router.plugins.prefix_affinity_filter import DECISION as AFFINITY_DECISION
from kserve_llmd.router.plugins.prefix_affinity_filter import Parameters as StickyParams
from kserve_llmd.router.plugins.prefix_affinity_filter import PrefixAffinityFilter
from kserve_llmd.router.plugins.queue_scorer import QueueScorer
from kserve_llmd.router.plugins.session_affinity_scorer import Parameters as SessionParams
from kserve_llmd.router.plugins.session_affinity_scorer import SessionAffinityScorer
from kserve_llmd.router.plugins.weighted_random_picker import Parameters as WRParams
from kserve_llmd.router.plugins.weighted_random_picker import WeightedRandomPicker
from kserve_llmd.router.registry import build_scheduler, parse_scheduler
from kserve_llmd.router.scheduler import Profile

NOW = 100.0


def eps(n: int, **metrics: Sequence[float]) -> list[Endpoint]:
    out = []
    for i in range(n):
        m = EngineMetrics(scraped_at=NOW)
        for key, values in metrics.items():
            setattr(m, key, values[i])
        out.append(Endpoint(id=f"e{i}:80", url=f"http://e{i}:80", models=frozenset({"m"}), metrics=m, index=i))
    return out


def ctx(prompt_tokens: int = 0, prefix: PrefixMatch | None = None, **kw: object) -> RequestContext:
    c = RequestContext(request_id="r", model="m", path="/v1/completions", body={}, prefix=prefix, **kw)  # type: ignore[arg-type]
    c.prompt_tokens = prompt_tokens
    return c


def deps(seed: int = 0, stale: list[str] | None = None) -> PluginDeps:
    return PluginDeps(clock=lambda: NOW, rng=random.Random(seed), stale_after=1.0,
                      on_stale=(lambda ep: stale.append(ep.id)) if stale is not None else (lambda ep: None))


# ------------------------------------------------------------------------------------------------ scorers


def test_queue_scorer_llm_d_formula() -> None:
    s = QueueScorer("q", None, deps())  # type: ignore[arg-type]
    assert list(s.score(ctx(), eps(3, waiting=[0, 5, 10]))) == [1.0, 0.5, 0.0]
    assert list(s.score(ctx(), eps(3, waiting=[4, 4, 4]))) == [1.0, 1.0, 1.0]


def test_stale_metrics_are_neutral_and_counted() -> None:
    stale: list[str] = []
    endpoints = eps(3, waiting=[0, 10, 99], kv_usage=[0.2, 0.9, 0.0])
    endpoints[2].metrics.scraped_at = NOW - 5
    q = QueueScorer("q", None, deps(stale=stale))  # type: ignore[arg-type]
    assert list(q.score(ctx(), endpoints)) == [1.0, 0.0, NEUTRAL]
    kv = KVCacheUtilizationScorer("kv", None, deps(stale=stale))  # type: ignore[arg-type]
    assert list(kv.score(ctx(), endpoints)) == pytest.approx([0.8, 0.1, NEUTRAL])
    assert stale == ["e2:80", "e2:80"]


def test_load_aware_scorer_counts_router_inflight_tokens() -> None:
    s = LoadAwareScorer("l", LoadParams(threshold=1000, queuedRequestTokens=100), deps())
    endpoints = eps(3, waiting=[0, 0, 2])
    endpoints[0].inflight_tokens = 500
    assert list(s.score(ctx(), endpoints)) == pytest.approx([0.5, 1.0, 0.8])
    endpoints[1].inflight_tokens = 4000  # above the threshold: relative to the most loaded
    assert list(s.score(ctx(), endpoints)) == pytest.approx([1 - 500 / 4000, 0.0, 1 - 200 / 4000])
    endpoints[0].prefill_tokens = 500  # ignored unless weighted (the default weight is 0)
    assert list(s.score(ctx(), endpoints)) == pytest.approx([1 - 500 / 4000, 0.0, 1 - 200 / 4000])


def test_load_aware_scorer_weighs_pending_prefill_when_asked() -> None:
    s = LoadAwareScorer("l", LoadParams(threshold=1000, pendingPrefillWeight=4), deps())
    endpoints = eps(2)
    # e0: one request still prefilling 300 uncached tokens; e1: two requests decoding, nothing to prefill
    endpoints[0].inflight_tokens, endpoints[0].prefill_tokens = 400, 300
    endpoints[1].inflight_tokens = 800
    assert list(s.score(ctx(), endpoints)) == pytest.approx([0.0, 1 - 800 / 1600])  # 400 + 4 x 300 = 1600


def test_pending_prefill_hold_counts_the_uncached_prompt_once() -> None:
    endpoints = eps(2)
    prefix = PrefixMatch(total_blocks=10, matched_blocks={"e0:80": 6}, block_size=16)
    c = ctx(prompt_tokens=160, prefix=prefix)
    holds = [PrefillHold(ep, c) for ep in endpoints]
    assert [ep.prefill_tokens for ep in endpoints] == [64, 160]  # e0 caches 60% of the prompt
    holds[0].release()
    holds[0].release()  # a second release (first byte, then the attempt's end) changes nothing
    assert [ep.prefill_tokens for ep in endpoints] == [0, 160]
    holds[1].release()
    assert endpoints[1].prefill_tokens == 0


def test_session_affinity_sticks_after_pick() -> None:
    s = SessionAffinityScorer("s", SessionParams(maxSessions=2), deps())
    endpoints = eps(3)
    c = ctx(session_id="u1")
    assert list(s.score(c, endpoints)) == [0.0, 0.0, 0.0]
    s.pre_request(c, endpoints[1])
    assert list(s.score(c, endpoints)) == [0.0, 1.0, 0.0]
    for other in ("u2", "u3"):  # bounded: u1 falls out
        s.pre_request(ctx(session_id=other), endpoints[0])
    assert list(s.score(c, endpoints)) == [0.0, 0.0, 0.0]


def test_lora_affinity_scorer() -> None:
    s = LoraAffinityScorer("l", None, deps())  # type: ignore[arg-type]
    endpoints = eps(4)
    endpoints[0].metrics.running_loras = frozenset({"a"})
    endpoints[1].metrics.waiting_loras = frozenset({"a"})
    endpoints[2].metrics.max_lora = 2
    endpoints[3].metrics.max_lora = 1
    endpoints[3].metrics.running_loras = frozenset({"b"})
    assert list(s.score(ctx(lora="a"), endpoints)) == [1.0, 0.8, 0.6, 0.0]
    assert list(s.score(ctx(), endpoints)) == [1.0] * 4


def test_no_hit_lru_spreads_cold_requests() -> None:
    s = NoHitLRUScorer("n", LRUParams(), deps())
    endpoints = eps(3)
    picks = []
    for _ in range(6):
        c = ctx(prefix=PrefixMatch(4, {}, 16))
        scores = s.score(c, endpoints)
        best = max(range(3), key=lambda i: (scores[i], -i))
        s.pre_request(c, endpoints[best])
        picks.append(best)
    assert picks == [0, 1, 2, 0, 1, 2]
    hit = ctx(prefix=PrefixMatch(4, {"e1:80": 2}, 16))
    assert list(s.score(hit, endpoints)) == [NEUTRAL] * 3


# ------------------------------------------------------------------------------------------------ framework


class _Fixed:
    def __init__(self, name: str, values: list[float]) -> None:
        self.name, self.values = name, values

    def score(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> Sequence[float]:
        return [self.values[ep.index] for ep in endpoints]


class _Recorder:
    name = "rec"

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    def pick(self, ctx: RequestContext, endpoints: Sequence[Endpoint], scores: Sequence[float]) -> Endpoint:
        self.totals = {ep.id: s for ep, s in zip(endpoints, scores, strict=True)}
        return endpoints[0]


def test_framework_clamps_and_weights() -> None:
    rec = _Recorder()
    prof = Profile("p", [], [(_Fixed("a", [2.0, -1.0, math.nan]), 2.0), (_Fixed("b", [0.5, 0.5, 0.5]), 1.0)], rec,
                   random.Random(0))
    prof.run(ctx(), eps(3))
    assert rec.totals == {"e0:80": 2.5, "e1:80": 0.5, "e2:80": 0.5}


def test_ties_broken_by_seeded_rng() -> None:
    def picks(seed: int) -> list[str]:
        prof = Profile("p", [], [(_Fixed("flat", [1.0] * 4), 1.0)], MaxScorePicker("m", MaxParams(), deps()),
                       random.Random(seed))
        endpoints = eps(4)
        out = []
        for _ in range(200):
            target = prof.run(ctx(), endpoints).target
            assert target is not None
            out.append(target.id)
        return out

    assert picks(1) == picks(1)
    assert picks(1) != picks(2)
    assert set(picks(1)) == {"e0:80", "e1:80", "e2:80", "e3:80"}


def test_max_score_wins_and_fallbacks_are_ranked() -> None:
    prof = Profile("p", [], [(_Fixed("s", [0.1, 0.9, 0.5]), 1.0)], MaxScorePicker("m", MaxParams(), deps()),
                   random.Random(0))
    result = prof.run(ctx(), eps(3))
    assert result.target is not None
    assert result.target.id == "e1:80"
    assert [e.id for e in result.fallbacks] == ["e2:80", "e0:80"]


def test_weighted_random_follows_scores() -> None:
    picker = WeightedRandomPicker("w", WRParams(), deps(seed=3))
    endpoints = eps(3)
    counts = Counter(picker.pick(ctx(), endpoints, [0.0, 1.0, 3.0]).id for _ in range(4000))
    assert counts["e0:80"] == 0
    assert 2.5 < counts["e2:80"] / counts["e1:80"] < 3.5


# ------------------------------------------------------------------------------------------------ sticky


def test_prefix_affinity_keeps_sticky_until_saturated() -> None:
    f = PrefixAffinityFilter("f", StickyParams(), deps())
    endpoints = eps(3)
    prefix = PrefixMatch(total_blocks=125, matched_blocks={"e0:80": 125}, block_size=16)
    c = ctx(prompt_tokens=2000, prefix=prefix)
    assert [e.id for e in f.filter(c, endpoints)] == ["e0:80"]
    # cost(e0) = load; cost(others) = 2000 uncached; kept while load <= 2000 * (1 + 1.5) + 256
    endpoints[0].inflight_tokens = 5256
    assert [e.id for e in f.filter(c, endpoints)] == ["e0:80"]
    assert c.cycle_state[AFFINITY_DECISION] == "kept"
    endpoints[0].inflight_tokens = 5257
    assert [e.id for e in f.filter(c, endpoints)] == ["e1:80", "e2:80"]
    assert c.cycle_state[AFFINITY_DECISION] == "yielded"
    # no choice to make (nothing sticky): nothing recorded
    cold = ctx(prompt_tokens=2000, prefix=PrefixMatch(total_blocks=125, matched_blocks={}, block_size=16))
    assert len(f.filter(cold, endpoints)) == 3
    assert AFFINITY_DECISION not in cold.cycle_state


def test_default_preset_does_not_hot_spot_a_burst() -> None:
    """A burst of requests sharing a prefix cached on one endpoint: it takes the first ones, then yields."""
    spec = parse_scheduler(load_preset("approx-prefix"))
    sched = build_scheduler(spec, deps(), matcher=None)
    endpoints = eps(4)
    prefix = PrefixMatch(total_blocks=125, matched_blocks={"e0:80": 125}, block_size=16)
    picks = []
    for _ in range(40):  # nothing completes during the burst; scraped metrics say nothing new
        c = ctx(prompt_tokens=2000, prefix=prefix, max_tokens=200)
        target = sched.schedule(c, endpoints).primary.target
        assert target is not None
        target.inflight_tokens += c.prompt_tokens + c.max_tokens
        picks.append(target.id)
    assert picks[0] == "e0:80"
    counts = Counter(picks)
    assert counts["e0:80"] >= 2  # affinity is used...
    assert len(counts) == 4
    assert max(counts.values()) <= 20


# ------------------------------------------------------------------------------------------------ config


def test_presets_all_build() -> None:
    for name in preset_names():
        spec = parse_scheduler(load_preset(name))
        build_scheduler(spec, deps())
    assert {"round-robin", "least-load", "approx-prefix", "precise-prefix", "pd-decider"} <= set(preset_names())


def _cfg(plugins: list[dict[str, object]], profile: list[dict[str, object]], **top: object) -> dict[str, object]:
    return {"apiVersion": "inference.networking.x-k8s.io/v1alpha1", "kind": "EndpointPickerConfig",
            "plugins": plugins, "schedulingProfiles": [{"name": "default", "plugins": profile}], **top}


@pytest.mark.parametrize(("doc", "needle"), [
    (_cfg([{"type": "best-scorer"}], [{"pluginRef": "best-scorer"}]), "unknown type 'best-scorer'"),
    (_cfg([{"type": "queue-scorer", "name": "q", "parameters": {"bogus": 1}}], [{"pluginRef": "q"}]),
     "plugin 'q' (type 'queue-scorer'): parameters.bogus: unknown field"),
    (_cfg([{"type": "load-aware-scorer", "parameters": {"threshold": -1}}], [{"pluginRef": "load-aware-scorer"}]),
     "parameters.threshold"),
    (_cfg([{"type": "queue-scorer"}], [{"pluginRef": "nope"}]), "pluginRef 'nope'"),
    (_cfg([{"type": "max-score-picker"}], [{"pluginRef": "max-score-picker", "weight": 2}]), "weight is only"),
    (_cfg([{"type": "queue-scorer"}], [{"pluginRef": "queue-scorer"}], extra=1), "extra: unknown field"),
    (_cfg([{"type": "queue-scorer", "colour": "red"}], [{"pluginRef": "queue-scorer"}]), "colour: unknown field"),
    ({"apiVersion": "v9", "kind": "EndpointPickerConfig", "plugins": [], "schedulingProfiles": []}, "apiVersion"),
    (_cfg([{"type": "random-picker"}, {"type": "max-score-picker"}],
          [{"pluginRef": "random-picker"}, {"pluginRef": "max-score-picker"}]), "more than one picker"),
    (_cfg([{"type": "precise-prefix-cache-scorer", "parameters": {"speculativeTTL": "soon"}}],
          [{"pluginRef": "precise-prefix-cache-scorer"}]), "parameters.speculativeTTL"),
    (_cfg([{"type": "precise-prefix-cache-scorer", "parameters": {"speculativeTTL": "0s"}}],
          [{"pluginRef": "precise-prefix-cache-scorer"}]), "parameters.speculativeTTL"),
    (_cfg([{"type": "prefix-cache-scorer", "name": "p", "parameters": {"speculativeIndexing": True}}],
          [{"pluginRef": "p"}]), "plugin 'p': speculativeIndexing is a parameter of precise-prefix-cache-scorer"),
])
def test_config_errors_name_the_plugin_and_field(doc: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_scheduler(parse_scheduler_config(doc))
    assert needle in err.value.message


def test_speculative_indexing_reaches_the_matcher_spec() -> None:
    doc = _cfg([{"type": "precise-prefix-cache-scorer",
                 "parameters": {"speculativeIndexing": True, "speculativeTTL": "1m30s"}}],
               [{"pluginRef": "precise-prefix-cache-scorer"}])
    matcher = parse_scheduler(parse_scheduler_config(doc)).matcher
    assert matcher is not None
    assert matcher.speculative_ttl_s == 90.0
    off = _cfg([{"type": "precise-prefix-cache-scorer", "parameters": {"speculativeTTL": "5s"}}],
               [{"pluginRef": "precise-prefix-cache-scorer"}])
    assert parse_scheduler(parse_scheduler_config(off)).matcher.speculative_ttl_s is None  # type: ignore[union-attr]


def test_profile_without_picker_gets_max_score() -> None:
    spec = parse_scheduler(parse_scheduler_config(_cfg([{"type": "queue-scorer"}], [{"pluginRef": "queue-scorer",
                                                                                      "weight": 2}])))
    assert spec.profiles[0].picker == "max-score-picker"
    assert spec.profiles[0].scorers == (("queue-scorer", 2.0),)


@pytest.mark.parametrize("ptype", ["precise-prefix-cache-scorer", "prefix-cache-scorer"])
def test_max_prefix_blocks_to_match_reaches_the_router_matcher(ptype: str) -> None:
    doc = _cfg([{"type": ptype, "parameters": {"maxPrefixBlocksToMatch": 7, "hashSeed": "42"}}],
               [{"pluginRef": ptype}])
    router = Router(RouterConfig(scheduler=doc), StaticDiscovery([]))
    assert getattr(router.matcher, "max_blocks", None) == 7
