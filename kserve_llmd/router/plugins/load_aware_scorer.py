"""``load-aware-scorer``: prefers endpoints with less work, counted in tokens, from the router's own books.

Formula, with ``L_e = inflight_tokens(e) + pendingPrefillWeight * prefill_tokens(e) + waiting(e) *
queuedRequestTokens``::

    score(e) = 1 - L_e / max(threshold, max_e' L_e')

``inflight_tokens`` is the router's own count (prompt + max_tokens of every request it has in flight there,
incremented at pick time, so it is exact even when scrapes are stale during a burst); ``prefill_tokens`` is the
router's count of the uncached prompt tokens there that have not yet produced a first byte (the prefill work a new
request would queue behind: a request in decode barely delays another's first token, one in prefill does);
``waiting`` is the scraped ``vllm:num_requests_waiting`` (traffic from other routers), 0 when stale. Below
``threshold`` tokens differences count in proportion to ``threshold``, so a lightly loaded pool does not magnify a
few tokens into a full score swing; above it the most loaded endpoint scores 0.

Parameters: ``threshold`` (tokens, >0, default 8192), ``queuedRequestTokens`` (≥0, default 256),
``pendingPrefillWeight`` (≥0, default 0; the ``least-load`` preset uses 4). (llm-d's scorer of the same name counts
waiting requests against a queue threshold; this one counts tokens.)

Why the least-load preset weighs pending prefill: without it, on random prompts at 2 QPS (``low-sharing``) it sent
21% of requests to an engine still prefilling another one (round-robin: 0%), and its TTFT p90 was 831 ms against
round-robin's 515. With weight 4 it sent none there, and its TTFT p90 was 514 against 513 (benchmarks/README.md).
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
    pendingPrefillWeight: float = Field(default=0.0, ge=0)


class LoadAwareScorer:
    def __init__(self, name: str, params: Parameters, deps: PluginDeps) -> None:
        self.name = name
        self._threshold = params.threshold
        self._per_waiting = params.queuedRequestTokens
        self._prefill_weight = params.pendingPrefillWeight
        self._deps = deps

    def score(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> Sequence[float]:
        now = self._deps.clock()
        fresh = self._deps.fresh
        per_waiting = self._per_waiting
        prefill_weight = self._prefill_weight
        loads = [
            ep.inflight_tokens + prefill_weight * ep.prefill_tokens
            + (ep.metrics.waiting * per_waiting if per_waiting and fresh(ep, now) else 0.0)
            for ep in endpoints
        ]
        scale = max(self._threshold, max(loads, default=0.0))
        return [1.0 - load / scale for load in loads]
