"""``queue-scorer``: prefers endpoints with fewer waiting requests (llm-d's formula).

Formula over the endpoints with fresh metrics: ``score(e) = (maxQ - q_e) / (maxQ - minQ)``, and 1 for all when
``maxQ == minQ``; ``q_e`` is the scraped ``vllm:num_requests_waiting``. Endpoints with stale metrics get 0.5.
Parameters: none.
"""

from __future__ import annotations

from collections.abc import Sequence

from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.plugins._base import NEUTRAL, NoParams, PluginDeps

TYPE = "queue-scorer"
Parameters = NoParams


class QueueScorer:
    def __init__(self, name: str, params: NoParams, deps: PluginDeps) -> None:
        self.name = name
        self._deps = deps

    def score(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> Sequence[float]:
        now = self._deps.clock()
        queues = [ep.metrics.waiting if self._deps.fresh(ep, now) else None for ep in endpoints]
        known = [q for q in queues if q is not None]
        if not known:
            return [NEUTRAL] * len(endpoints)
        lo, hi = min(known), max(known)
        if hi == lo:
            return [NEUTRAL if q is None else 1.0 for q in queues]
        span = hi - lo
        return [NEUTRAL if q is None else (hi - q) / span for q in queues]
