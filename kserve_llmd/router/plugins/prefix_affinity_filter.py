"""``prefix-affinity-filter``: "sticky until saturated" prefix affinity (the default preset's first stage).

Keeps only the endpoints that already cache most of the prompt, UNLESS the cheapest of them would cost more than
the cheapest other endpoint by a penalty; then it yields, dropping the saturated sticky endpoints so the load
scorers spread the request over the rest. This is what stops a plain max-score prefix router from hot-spotting one
endpoint under a burst of requests sharing a prefix (scraped scores are stale during a burst; the router's own
in-flight counts, updated at pick time, are not).

Formula, for prompt length ``P`` tokens, cached tokens ``c_e = P × PrefixMatch.ratio(e)``, router-side in-flight
tokens ``f_e`` (prompt + max_tokens of requests this router has in flight there) and scraped waiting requests
``w_e`` (0 when stale)::

    cost_e   = (P - c_e) * prefillTokenCost + (f_e + w_e * queuedRequestTokens) * loadTokenCost
    sticky   = { e : c_e / P >= affinityThreshold }
    keep sticky  iff  min(cost over sticky) <= min(cost over the others) * (1 + penalty) + slackTokens

If ``sticky`` is empty or is every candidate, the input passes unchanged; if the test fails, the non-sticky
endpoints pass. Each real choice is recorded (``DECISION``) and counted by the router as ``kept`` or ``yielded``.
Inputs: ``ctx.prefix``, ``ctx.prompt_tokens``, ``Endpoint.inflight_tokens``, scraped waiting.

Why the penalty is 1.5 (it was 0.5 until 2026-11-25): the cost prices only this request's prefill, but a yield also
puts a second copy of the prefix into the cluster's caches, where it evicts other prefixes. Replaying a demo run on
its own placement (``benchmark/ceiling.py --placement run``) put 8.5 points of its top level's hit rate on these
yields. Demo runs of precise-prefix alone (``kserve-llmd demo --configs precise-prefix``), hit rate at 24 QPS:
penalty 0.5: 85.0, 84.4, 84.8% (81.2% in a three-configuration run); 1.5: 87.0, 87.9%; 2.0: 88.3, 86.6, 87.4%;
at 12 QPS 74–76% against 79–80%; throughput and TTFT p90 equal within the runs' spread. 1.5 rather than 2: a burst
on one prefix whose copies the router never learns of must still not put half of it on one of four endpoints
(``test_default_preset_does_not_hot_spot_a_burst``: 2.0 gives 21 of 40, 1.5 passes).

Parameters (ranges): ``affinityThreshold`` (0..1, default 0.8), ``prefillTokenCost`` (≥0, 1.0: cost of prefilling
one uncached token), ``loadTokenCost`` (≥0, 1.0: cost of one token already queued or running there),
``queuedRequestTokens`` (≥0, 256: tokens assumed per scraped waiting request), ``penalty`` (≥0, 1.5),
``slackTokens`` (≥0, 256).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.plugins._base import Params, PluginDeps

TYPE = "prefix-affinity-filter"
#: ``ctx.cycle_state`` key of the filter's decision when it had one to make: "kept" (the sticky endpoints passed) or
#: "yielded" (the others passed). The proxy counts it (``kserve_llmd_router_prefix_affinity_decisions_total``).
DECISION = "prefix-affinity"
KEPT, YIELDED = "kept", "yielded"


class Parameters(Params):
    affinityThreshold: float = Field(default=0.8, ge=0, le=1)
    prefillTokenCost: float = Field(default=1.0, ge=0)
    loadTokenCost: float = Field(default=1.0, ge=0)
    queuedRequestTokens: float = Field(default=256.0, ge=0)
    penalty: float = Field(default=1.5, ge=0)
    slackTokens: float = Field(default=256.0, ge=0)


class PrefixAffinityFilter:
    def __init__(self, name: str, params: Parameters, deps: PluginDeps) -> None:
        self.name = name
        self.p = params
        self._deps = deps

    def cost(self, ctx: RequestContext, ep: Endpoint, now: float) -> float:
        prefix = ctx.prefix
        # the ratio, not blocks x block_size: an approximate matcher counts its pseudo-blocks in characters
        cached = 0.0 if prefix is None else prefix.ratio(ep.id) * ctx.prompt_tokens
        uncached = max(ctx.prompt_tokens - cached, 0.0)
        waiting = ep.metrics.waiting if self._deps.fresh(ep, now) else 0.0
        load = ep.inflight_tokens + waiting * self.p.queuedRequestTokens
        return uncached * self.p.prefillTokenCost + load * self.p.loadTokenCost

    def filter(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> Sequence[Endpoint]:
        prefix = ctx.prefix
        if prefix is None or prefix.total_blocks == 0 or len(endpoints) < 2:
            return endpoints
        threshold = self.p.affinityThreshold
        sticky = [ep for ep in endpoints if prefix.ratio(ep.id) >= threshold]
        if not sticky or len(sticky) == len(endpoints):
            return endpoints
        sticky_ids = {ep.id for ep in sticky}
        others = [ep for ep in endpoints if ep.id not in sticky_ids]
        now = self._deps.clock()
        best_sticky = min(self.cost(ctx, ep, now) for ep in sticky)
        best_other = min(self.cost(ctx, ep, now) for ep in others)
        if best_sticky <= best_other * (1.0 + self.p.penalty) + self.p.slackTokens:
            ctx.cycle_state[DECISION] = KEPT
            return sticky
        ctx.cycle_state[DECISION] = YIELDED
        return others
