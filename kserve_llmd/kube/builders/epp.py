"""The scheduler configuration (llm-d ``EndpointPickerConfig``): plugins plus scheduling profiles.

The same plugin type names drive our router (``router/presets``) and llm-d's endpoint picker, so one config can be
carried inline by an ``LLMInferenceService`` (``spec.router.scheduler.config.inline``) or mounted into our router.
KServe's examples and the upstream endpoint picker use ``apiVersion: inference.networking.x-k8s.io/v1alpha1``;
llm-d's newer router also reads ``llm-d.ai/v1alpha1``: pick with ``api_version``.

Default weights follow llm-d (REFERENCE 2): prefix-cache 3, queue 2, kv-cache-utilization 2.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from kserve_llmd.kube.builders.core import KubeModel

EPP_API_VERSION = "inference.networking.x-k8s.io/v1alpha1"
LLMD_API_VERSION = "llm-d.ai/v1alpha1"


class PluginSpec(KubeModel):
    """One plugin instance; ``name`` defaults to ``type`` (what profiles reference)."""

    type: str = Field(min_length=1)
    name: str | None = None
    parameters: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        return self.name or self.type


class ProfilePlugin(KubeModel):
    plugin_ref: str
    weight: int | None = Field(default=None, ge=0)


class SchedulingProfile(KubeModel):
    name: str = Field(min_length=1)
    plugins: list[ProfilePlugin]


class EndpointPickerConfig(KubeModel):
    """``EndpointPickerConfig``; every ``pluginRef`` must name a declared plugin."""

    api_version: str = EPP_API_VERSION
    kind: Literal["EndpointPickerConfig"] = "EndpointPickerConfig"
    plugins: list[PluginSpec]
    scheduling_profiles: list[SchedulingProfile]

    @model_validator(mode="after")
    def _refs_resolve(self) -> EndpointPickerConfig:
        declared = [plugin.ref for plugin in self.plugins]
        duplicates = sorted({ref for ref in declared if declared.count(ref) > 1})
        if duplicates:
            raise ValueError(f"plugins: duplicate plugin name(s) {duplicates}")
        for i, profile in enumerate(self.scheduling_profiles):
            for j, ref in enumerate(profile.plugins):
                if ref.plugin_ref not in declared:
                    raise ValueError(f"schedulingProfiles[{i}].plugins[{j}].pluginRef: {ref.plugin_ref!r} is not a "
                                     f"declared plugin (declared: {declared})")
        return self


def _scorers(prefix: int, queue: int, kv: int) -> list[ProfilePlugin]:
    return [ProfilePlugin(plugin_ref="prefix-cache-scorer", weight=prefix),
            ProfilePlugin(plugin_ref="queue-scorer", weight=queue),
            ProfilePlugin(plugin_ref="kv-cache-utilization-scorer", weight=kv)]


_SCORER_PLUGINS = [PluginSpec(type="prefix-cache-scorer"), PluginSpec(type="queue-scorer"),
                   PluginSpec(type="kv-cache-utilization-scorer"), PluginSpec(type="max-score-picker")]


def aggregated_config(*, api_version: str = EPP_API_VERSION, prefix_weight: int = 3, queue_weight: int = 2,
                      kv_weight: int = 2) -> EndpointPickerConfig:
    """One ``default`` profile: prefix-cache + queue + kv-utilization scorers, max-score picker."""
    profile = SchedulingProfile(name="default", plugins=[*_scorers(prefix_weight, queue_weight, kv_weight),
                                                         ProfilePlugin(plugin_ref="max-score-picker")])
    return EndpointPickerConfig(api_version=api_version, plugins=list(_SCORER_PLUGINS),
                                scheduling_profiles=[profile])


def pd_config(*, api_version: str = EPP_API_VERSION, non_cached_tokens: int = 0, prefix_weight: int = 3,
              queue_weight: int = 2, kv_weight: int = 2) -> EndpointPickerConfig:
    """Prefill/decode: ``pd-profile-handler`` runs the ``decode`` profile, then ``prefill`` when the
    ``prefix-based-pd-decider`` says so (uncached prompt part ≥ ``non_cached_tokens``; 0 = always, KServe's default).
    """
    plugins = [
        *_SCORER_PLUGINS,
        PluginSpec(type="prefill-filter"),
        PluginSpec(type="decode-filter"),
        PluginSpec(type="prefix-based-pd-decider", parameters={"nonCachedTokens": non_cached_tokens}),
        PluginSpec(type="pd-profile-handler", parameters={"deciderPluginName": "prefix-based-pd-decider"}),
    ]
    scorers = _scorers(prefix_weight, queue_weight, kv_weight)
    profiles = [
        SchedulingProfile(name=role, plugins=[ProfilePlugin(plugin_ref=f"{role}-filter"), *scorers,
                                              ProfilePlugin(plugin_ref="max-score-picker")])
        for role in ("prefill", "decode")
    ]
    return EndpointPickerConfig(api_version=api_version, plugins=plugins, scheduling_profiles=profiles)
