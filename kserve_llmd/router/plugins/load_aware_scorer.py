"""``load-aware-scorer``: prefers endpoints with less work, counted in tokens, from the router's own books.

Formula, with ``L_e = inflight_tokens(e) + waiting(e) * queuedRequestTokens``::

    score(e) = 1 - L_e / max(threshold, max_e' L_e')

``inflight_tokens`` is the router's own count (prompt + max_tokens of every request it has in flight there,
incremented at pick time, so it is exact even when scrapes are stale during a burst); ``waiting`` is the scraped
``vllm:num_requests_waiting`` (traffic from other routers), 0 when stale. Below ``threshold`` tokens differences
count in proportion to ``threshold``, so a lightly loaded pool does not magnify a few tokens into a full score
swing; above it the most loaded endpoint scores 0.

Parameters: ``threshold`` (tokens, >0, default 8192), ``queuedRequestTokens`` (≥0, default 256). (llm-d's scorer of
the same name counts waiting requests against a queue threshold; this one counts tokens.)
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.plugins._base import Params, PluginDeps

TYPE = "load-aware-scorer"


class Parameters(Params):
    threshold: float = Field(default=8192.0, gt=0)
    queuedRequestTokens: float = Field(default=256.0, ge=0)


class LoadAwareScorer:
    def __init__(self, name: str, params: Parameters, deps: PluginDeps) -> None:
        self.name = name
        self._threshold = params.threshold
        self._per_waiting = params.queuedRequestTokens
        self._deps = deps

    def score(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> Sequence[float]:
        now = self._deps.clock()
        fresh = self._deps.fresh
        per_waiting = self._per_waiting
        loads = [
            ep.inflight_tokens + (ep.metrics.waiting * per_waiting if per_waiting and fresh(ep, now) else 0.0)
            for ep in endpoints
        ]
        scale = max(self._threshold, max(loads, default=0.0))
        return [1.0 - load / scale for load in loads]
