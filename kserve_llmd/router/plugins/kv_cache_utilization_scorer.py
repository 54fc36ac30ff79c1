"""``kv-cache-utilization-scorer`` (alias ``kv-cache-scorer``): prefers endpoints with free KV-cache space.

Formula: ``score(e) = 1 - kv_usage(e)`` from the scraped ``vllm:kv_cache_usage_perc`` (0..1; older engines
``vllm:gpu_cache_usage_perc``). Endpoints with stale metrics get 0.5. Parameters: none.
"""

from __future__ import annotations

from collections.abc import Sequence

from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.plugins._base import NEUTRAL, NoParams, PluginDeps

TYPE = "kv-cache-utilization-scorer"
ALIAS = "kv-cache-scorer"
Parameters = NoParams


class KVCacheUtilizationScorer:
    def __init__(self, name: str, params: NoParams, deps: PluginDeps) -> None:
        self.name = name
        self._deps = deps

    def score(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> Sequence[float]:
        now = self._deps.clock()
        fresh = self._deps.fresh
        return [1.0 - ep.metrics.kv_usage if fresh(ep, now) else NEUTRAL for ep in endpoints]
