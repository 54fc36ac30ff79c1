"""The ``prefix-based-pd-decider`` branches, its config validation, and the prefill body transform (no sockets)."""

from __future__ import annotations

import random
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from kserve_llmd.errors import ConfigError
from kserve_llmd.router.config import load_preset, parse_scheduler_config
from kserve_llmd.router.endpoints import EndpointRegistry
from kserve_llmd.router.interfaces import Endpoint, EngineMetrics, PDDecision, PrefixMatch, RequestContext
from kserve_llmd.router.pd import PREFILL_KV_PARAMS, PDConfig, build_pd, prefill_body
from kserve_llmd.router.plugins._base import PluginDeps
from kserve_llmd.router.plugins.prefix_based_pd_decider import Parameters, PrefixBasedPDDecider
from kserve_llmd.router.registry import parse_scheduler

NOW = 100.0


def deps() -> PluginDeps:
    return PluginDeps(clock=lambda: NOW, rng=random.Random(0), stale_after=1.0)


def ctx(prompt: int, matched: dict[str, int] | None = None, block: int = 16) -> RequestContext:
    c = RequestContext("r", "m", "/v1/completions", {}, prompt_tokens=prompt)
    c.prefix = PrefixMatch(prompt // block, matched or {}, block)
    return c


D = Endpoint(id="d:1", url="http://d:1", role="decode")
P = Endpoint(id="p:1", url="http://p:1", role="prefill")


def decider(**params: Any) -> PrefixBasedPDDecider:
    return PrefixBasedPDDecider("dec", Parameters(**params), deps())


def test_short_prompt_stays_aggregated() -> None:
    d = decider(promptTokens=512)
    assert d.decide(ctx(511), D, P) == PDDecision(False, "short-prompt")
    assert d.decide(ctx(512), D, P).disaggregate


def test_uncached_part_on_the_decode_endpoint_decides() -> None:
    d = decider(nonCachedTokens=100)
    assert d.decide(ctx(1000, {"d:1": 58}), D, P).reason == "cached-on-decode"  # 1000 - 928 = 72 uncached
    assert d.decide(ctx(1000, {"d:1": 56}), D, P).reason == "decider"  # 104 uncached
    # blocks cached on the PREFILL endpoint do not make the decode's part smaller
    assert d.decide(ctx(1000, {"p:1": 62}), D, P).disaggregate


def test_load_aware_keeps_work_off_a_saturated_prefill_pool() -> None:
    d = decider(loadAware=True, maxSlowdown=2.0, transferTokenCost=0.0, queuedRequestTokens=100)
    idle = Endpoint(id="p:1", url="http://p:1", role="prefill")
    assert d.decide(ctx(1000), D, idle).disaggregate  # T_pd = 1000 <= 2 x 1000
    busy = Endpoint(id="p:1", url="http://p:1", role="prefill", inflight_tokens=1001)
    assert d.decide(ctx(1000), D, busy).reason == "prefill-saturated"  # T_pd = 2001 > 2000
    # the decode's own queue (fresh scrape) makes local prefill slower too: P/D pays again
    queued = Endpoint(id="d:1", url="http://d:1", role="decode",
                      metrics=EngineMetrics(waiting=1, scraped_at=NOW))
    assert d.decide(ctx(1000), queued, busy).disaggregate  # T_agg = 100 + 1000; 2001 <= 2200
    stale = Endpoint(id="d:1", url="http://d:1", role="decode", metrics=EngineMetrics(waiting=1, scraped_at=0.0))
    assert not d.decide(ctx(1000), stale, busy).disaggregate  # stale waiting counts as 0


def test_load_rule_counts_what_the_prefill_endpoint_caches() -> None:
    d = decider(loadAware=True, maxSlowdown=1.0, transferTokenCost=0.0)
    busy = Endpoint(id="p:1", url="http://p:1", role="prefill", inflight_tokens=500)
    assert not d.decide(ctx(1000), D, busy).disaggregate  # 500 + 1000 > 1000
    assert d.decide(ctx(1000, {"p:1": 32}), D, busy).disaggregate  # 500 + (1000 - 512) <= 1000


def test_params_are_strict() -> None:
    with pytest.raises(ConfigError, match=r"prefix-based-pd-decider.*nonCachedToken"):
        parse_scheduler(_with_decider({"nonCachedToken": 5}))
    with pytest.raises(ConfigError, match="maxSlowdown"):
        parse_scheduler(_with_decider({"maxSlowdown": 0.5}))


def _with_decider(params: dict[str, Any], extra: bool = False) -> Any:
    data = load_preset("pd-decider").model_dump(exclude_none=True)
    for plugin in data["plugins"]:
        if plugin["type"] == "prefix-based-pd-decider":
            plugin["parameters"] = params
    if extra:
        data["plugins"].append({"type": "prefix-based-pd-decider", "name": "second"})
    return parse_scheduler_config(data)


def _no_session() -> aiohttp.ClientSession:
    raise AssertionError("building makes no call")


def _build(config: Any) -> Any:
    return build_pd(parse_scheduler(config), deps(), PDConfig(), EndpointRegistry(), _no_session,
                    CollectorRegistry(), connect_timeout=1.0)


def test_build_rejects_two_deciders_and_a_decider_without_pd_handler() -> None:
    with pytest.raises(ConfigError, match="more than one P/D decider"):
        _build(_with_decider({}, extra=True))
    single = parse_scheduler_config({
        "plugins": [{"type": "prefix-based-pd-decider"}, {"type": "decode-filter"}],
        "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "decode-filter"}]}],
    })
    with pytest.raises(ConfigError, match="needs a pd-profile-handler"):
        _build(single)
    with pytest.raises(ConfigError, match="pd-decider cannot be used inside a profile"):
        parse_scheduler(parse_scheduler_config({
            "plugins": [{"type": "prefix-based-pd-decider"}],
            "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "prefix-based-pd-decider"}]}],
        }))


def test_presets_build() -> None:
    assert _build(load_preset("pd-decider"))._decider is not None
    assert _build(load_preset("pd-always"))._decider is None  # every request disaggregated
    assert _build(load_preset("precise-prefix"))._prefill_profile is None  # no P/D (the header still works)


def test_prefill_body_follows_the_nixl_protocol() -> None:
    client = {"model": "m", "prompt": "x", "stream": True, "stream_options": {"include_usage": True},
              "max_tokens": 300, "max_completion_tokens": 300, "min_tokens": 10, "temperature": 0.5,
              "kv_transfer_params": {"evil": True}}
    body = prefill_body(client)
    assert body == {"model": "m", "prompt": "x", "stream": False, "max_tokens": 1, "max_completion_tokens": 1,
                    "temperature": 0.5, "kv_transfer_params": PREFILL_KV_PARAMS}
    assert client["max_tokens"] == 300
    assert client["stream_options"]
    assert body["kv_transfer_params"] is not PREFILL_KV_PARAMS
