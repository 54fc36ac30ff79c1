"""Every plugin type, registered explicitly, and the two-phase build of a scheduler from an EndpointPickerConfig.

Phase 1 (``parse_scheduler``): look every ``type`` up in ``REGISTRY`` (unknown → ``ConfigError`` listing the known
ones), validate its ``parameters`` against the plugin's strict pydantic model, resolve every profile's
``pluginRef``s and check kinds (weights only on scorers, exactly one picker and one profile handler). No plugin
object exists yet. Phase 2 (``build_scheduler``): construct each plugin once (shared between profiles that
reference it) with the injected ``PluginDeps``. Every error names the plugin (or profile) and the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from pydantic import ValidationError

from kserve_llmd.errors import ConfigError
from kserve_llmd.router.config import SchedulerConfig
from kserve_llmd.router.interfaces import Filter, Picker, PrefixMatcher, ProfileHandler, Scorer
from kserve_llmd.router.plugins import (
    decode_filter,
    kv_cache_utilization_scorer,
    load_aware_scorer,
    lora_affinity_scorer,
    lora_filter,
    max_score_picker,
    no_hit_lru_scorer,
    pd_profile_handler,
    prefill_filter,
    prefix_affinity_filter,
    prefix_based_pd_decider,
    prefix_cache_scorer,
    queue_scorer,
    random_picker,
    round_robin_picker,
    session_affinity_scorer,
    single_profile_handler,
    weighted_random_picker,
)
from kserve_llmd.router.plugins._base import Params, PluginDeps
from kserve_llmd.router.scheduler import Profile, Scheduler

Kind = Literal["filter", "scorer", "picker", "profile-handler", "pd-decider"]


@dataclass(frozen=True, slots=True)
class PluginType:
    kind: Kind
    params: type[Params]
    factory: Callable[[str, Any, PluginDeps], Any]


REGISTRY: dict[str, PluginType] = {
    # filters
    decode_filter.TYPE: PluginType("filter", decode_filter.Parameters, decode_filter.DecodeFilter),
    prefill_filter.TYPE: PluginType("filter", prefill_filter.Parameters, prefill_filter.PrefillFilter),
    lora_filter.TYPE: PluginType("filter", lora_filter.Parameters, lora_filter.LoraAffinityFilter),
    prefix_affinity_filter.TYPE: PluginType(
        "filter", prefix_affinity_filter.Parameters, prefix_affinity_filter.PrefixAffinityFilter
    ),
    # scorers
    prefix_cache_scorer.TYPE: PluginType(
        "scorer", prefix_cache_scorer.Parameters, partial(prefix_cache_scorer.PrefixCacheScorer, mode="approximate")
    ),
    prefix_cache_scorer.PRECISE_TYPE: PluginType(
        "scorer", prefix_cache_scorer.Parameters, partial(prefix_cache_scorer.PrefixCacheScorer, mode="precise")
    ),
    queue_scorer.TYPE: PluginType("scorer", queue_scorer.Parameters, queue_scorer.QueueScorer),
    kv_cache_utilization_scorer.TYPE: PluginType(
        "scorer", kv_cache_utilization_scorer.Parameters, kv_cache_utilization_scorer.KVCacheUtilizationScorer
    ),
    kv_cache_utilization_scorer.ALIAS: PluginType(
        "scorer", kv_cache_utilization_scorer.Parameters, kv_cache_utilization_scorer.KVCacheUtilizationScorer
    ),
    load_aware_scorer.TYPE: PluginType("scorer", load_aware_scorer.Parameters, load_aware_scorer.LoadAwareScorer),
    session_affinity_scorer.TYPE: PluginType(
        "scorer", session_affinity_scorer.Parameters, session_affinity_scorer.SessionAffinityScorer
    ),
    lora_affinity_scorer.TYPE: PluginType(
        "scorer", lora_affinity_scorer.Parameters, lora_affinity_scorer.LoraAffinityScorer
    ),
    no_hit_lru_scorer.TYPE: PluginType("scorer", no_hit_lru_scorer.Parameters, no_hit_lru_scorer.NoHitLRUScorer),
    # pickers
    max_score_picker.TYPE: PluginType("picker", max_score_picker.Parameters, max_score_picker.MaxScorePicker),
    random_picker.TYPE: PluginType("picker", random_picker.Parameters, random_picker.RandomPicker),
    weighted_random_picker.TYPE: PluginType(
        "picker", weighted_random_picker.Parameters, weighted_random_picker.WeightedRandomPicker
    ),
    round_robin_picker.TYPE: PluginType("picker", round_robin_picker.Parameters, round_robin_picker.RoundRobinPicker),
    # profile handlers
    single_profile_handler.TYPE: PluginType(
        "profile-handler", single_profile_handler.Parameters, single_profile_handler.SingleProfileHandler
    ),
    pd_profile_handler.TYPE: PluginType(
        "profile-handler", pd_profile_handler.Parameters, pd_profile_handler.PDProfileHandler
    ),
    # P/D deciders (read by router/pd.py, not used inside profiles)
    prefix_based_pd_decider.TYPE: PluginType(
        "pd-decider", prefix_based_pd_decider.Parameters, prefix_based_pd_decider.PrefixBasedPDDecider
    ),
}

#: What a profile gets when it names no picker (as llm-d does).
DEFAULT_PICKER = max_score_picker.TYPE


@dataclass(frozen=True, slots=True)
class ParsedPlugin:
    ref: str
    type: str
    plugin_type: PluginType
    params: Params


@dataclass(frozen=True, slots=True)
class ParsedProfile:
    name: str
    filters: tuple[str, ...]
    scorers: tuple[tuple[str, float], ...]
    picker: str


@dataclass(frozen=True, slots=True)
class MatcherSpec:
    """What the prefix scorer(s) ask of the router's ``PrefixMatcher``."""

    mode: prefix_cache_scorer.MatcherMode
    block_size: int
    max_blocks: int
    lru_capacity: int
    speculative_ttl_s: float | None = None  # precise only: speculative indexing on, with this TTL


@dataclass(frozen=True, slots=True)
class SchedulerSpec:
    plugins: dict[str, ParsedPlugin]
    profiles: tuple[ParsedProfile, ...]
    handler: str
    primary: str
    matcher: MatcherSpec | None


def parse_scheduler(config: SchedulerConfig) -> SchedulerSpec:
    """Phase 1: validate everything, build nothing."""
    plugins: dict[str, ParsedPlugin] = {}
    for spec in config.plugins:
        ptype = REGISTRY.get(spec.type)
        if ptype is None:
            raise ConfigError(
                f"plugin {spec.ref!r}: unknown type {spec.type!r}; known types: {', '.join(sorted(REGISTRY))}",
                param=f"plugins.{spec.ref}.type",
            )
        if spec.ref in plugins:
            raise ConfigError(f"plugin {spec.ref!r}: defined twice", param=f"plugins.{spec.ref}.name")
        try:
            params = ptype.params.model_validate(spec.parameters)
        except ValidationError as exc:
            raise ConfigError(f"plugin {spec.ref!r} (type {spec.type!r}): {_fields(exc)}",
                              param=f"plugins.{spec.ref}.parameters") from None
        plugins[spec.ref] = ParsedPlugin(spec.ref, spec.type, ptype, params)
    # an implicit max-score picker for profiles that name none
    implicit_picker = ParsedPlugin(DEFAULT_PICKER, DEFAULT_PICKER, REGISTRY[DEFAULT_PICKER],
                                   max_score_picker.Parameters())

    profiles = []
    names = [p.name for p in config.schedulingProfiles]
    for prof in config.schedulingProfiles:
        if names.count(prof.name) > 1:
            raise ConfigError(f"profile {prof.name!r}: defined twice", param=f"schedulingProfiles.{prof.name}")
        filters: list[str] = []
        scorers: list[tuple[str, float]] = []
        pickers: list[str] = []
        for ref in prof.plugins:
            where = f"profile {prof.name!r}, pluginRef {ref.pluginRef!r}"
            parsed = plugins.get(ref.pluginRef)
            if parsed is None:
                raise ConfigError(f"{where}: no plugin of that name is defined in plugins",
                                  param=f"schedulingProfiles.{prof.name}.plugins")
            kind = parsed.plugin_type.kind
            if ref.weight is not None and kind != "scorer":
                raise ConfigError(f"{where}: weight is only allowed on scorers, and this is a {kind}",
                                  param=f"schedulingProfiles.{prof.name}.plugins.weight")
            if kind == "filter":
                filters.append(parsed.ref)
            elif kind == "scorer":
                scorers.append((parsed.ref, 1.0 if ref.weight is None else ref.weight))
            elif kind == "picker":
                pickers.append(parsed.ref)
            else:
                raise ConfigError(f"{where}: a {kind} cannot be used inside a profile",
                                  param=f"schedulingProfiles.{prof.name}.plugins")
        if len(pickers) > 1:
            raise ConfigError(f"profile {prof.name!r}: more than one picker ({', '.join(pickers)})",
                              param=f"schedulingProfiles.{prof.name}.plugins")
        if not pickers:
            plugins.setdefault(DEFAULT_PICKER, implicit_picker)
            if plugins[DEFAULT_PICKER].plugin_type.kind != "picker":
                raise ConfigError(f"profile {prof.name!r}: names no picker, and {DEFAULT_PICKER!r} is taken",
                                  param=f"schedulingProfiles.{prof.name}.plugins")
            pickers.append(DEFAULT_PICKER)
        profiles.append(ParsedProfile(prof.name, tuple(filters), tuple(scorers), pickers[0]))

    handlers = [p for p in plugins.values() if p.plugin_type.kind == "profile-handler"]
    if len(handlers) > 1:
        raise ConfigError(f"more than one profile handler: {', '.join(h.ref for h in handlers)}", param="plugins")
    if handlers:
        handler = handlers[0]
    elif len(profiles) == 1:
        handler = ParsedPlugin(single_profile_handler.TYPE, single_profile_handler.TYPE,
                               REGISTRY[single_profile_handler.TYPE], single_profile_handler.Parameters())
        plugins[handler.ref] = handler
    else:
        raise ConfigError("several schedulingProfiles need a profile handler (e.g. pd-profile-handler)",
                          param="plugins")
    primary = _check_handler(handler, names)
    return SchedulerSpec(plugins, tuple(profiles), handler.ref, primary, _matcher_spec(plugins.values()))


def _check_handler(handler: ParsedPlugin, names: list[str]) -> str:
    params = handler.params
    if isinstance(params, pd_profile_handler.Parameters):
        for field_name, value in (("decodeProfile", params.decodeProfile), ("prefillProfile", params.prefillProfile)):
            if value not in names:
                raise ConfigError(f"plugin {handler.ref!r}: {field_name} {value!r} is not a schedulingProfile "
                                  f"(have: {', '.join(names)})", param=f"plugins.{handler.ref}.{field_name}")
        return params.decodeProfile
    if len(names) != 1:
        raise ConfigError(f"plugin {handler.ref!r}: single-profile-handler needs exactly one schedulingProfile, "
                          f"got {len(names)}", param="schedulingProfiles")
    return names[0]


def _matcher_spec(plugins: Any) -> MatcherSpec | None:
    found: list[MatcherSpec] = []
    for p in plugins:
        if p.type in (prefix_cache_scorer.TYPE, prefix_cache_scorer.PRECISE_TYPE):
            prm = p.params
            assert isinstance(prm, prefix_cache_scorer.Parameters)
            mode: prefix_cache_scorer.MatcherMode = "precise" if p.type == prefix_cache_scorer.PRECISE_TYPE \
                else "approximate"
            if mode == "approximate" and prm.speculativeIndexing:
                raise ConfigError(f"plugin {p.ref!r}: speculativeIndexing is a parameter of "
                                  f"{prefix_cache_scorer.PRECISE_TYPE} (the approximate scorer learns from every "
                                  "routing decision already)", param="plugins")
            found.append(MatcherSpec(mode, prm.block_size, prm.maxPrefixBlocksToMatch, prm.lruCapacityPerServer,
                                     prm.speculative_ttl_s))
    if not found:
        # the sticky filter and the no-hit scorer read ctx.prefix too; they then see no match
        return None
    if any(f != found[0] for f in found[1:]):
        raise ConfigError("prefix-cache scorers disagree on mode or parameters; the router has one matcher",
                          param="plugins")
    return found[0]


def build_scheduler(spec: SchedulerSpec, deps: PluginDeps, matcher: PrefixMatcher | None = None) -> Scheduler:
    """Phase 2: construct every plugin once and wire the profiles."""
    built: dict[str, Any] = {}
    for ref, parsed in spec.plugins.items():
        built[ref] = parsed.plugin_type.factory(ref, parsed.params, deps)
    profiles = []
    for prof in spec.profiles:
        filters: list[Filter] = [built[r] for r in prof.filters]
        scorers: list[tuple[Scorer, float]] = [(built[r], w) for r, w in prof.scorers]
        picker: Picker = built[prof.picker]
        profiles.append(Profile(prof.name, filters, scorers, picker, deps.rng))
    handler: ProfileHandler = built[spec.handler]
    return Scheduler(handler, profiles, spec.primary, matcher if spec.matcher is not None else None)


def _fields(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(parameters)"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"parameters.{loc}: {msg}")
    return "; ".join(parts)
