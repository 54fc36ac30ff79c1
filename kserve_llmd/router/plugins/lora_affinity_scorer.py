"""``lora-affinity-scorer``: prefers endpoints that already run the requested LoRA adapter.

Formula, from the scraped ``vllm:lora_requests_info`` (running, waiting adapters and ``max_lora``)::

    score(e) = 1.0  if lora ∈ running(e)
               0.8  if lora ∈ waiting(e)
               0.6  if |running(e) ∪ waiting(e)| < max_lora(e)   (a free adapter slot)
               0.0  otherwise

Requests without a LoRA score 1 everywhere (no preference); stale metrics score 0.5. Parameters: none.
"""

from __future__ import annotations

from collections.abc import Sequence

from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.plugins._base import NEUTRAL, NoParams, PluginDeps

TYPE = "lora-affinity-scorer"
Parameters = NoParams


class LoraAffinityScorer:
    def __init__(self, name: str, params: NoParams, deps: PluginDeps) -> None:
        self.name = name
        self._deps = deps

    def score(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> Sequence[float]:
        lora = ctx.lora
        if lora is None:
            return [1.0] * len(endpoints)
        now = self._deps.clock()
        out = []
        for ep in endpoints:
            m = ep.metrics
            if not self._deps.fresh(ep, now):
                out.append(NEUTRAL)
            elif lora in m.running_loras:
                out.append(1.0)
            elif lora in m.waiting_loras:
                out.append(0.8)
            elif len(m.running_loras | m.waiting_loras) < m.max_lora:
                out.append(0.6)
            else:
                out.append(0.0)
        return out
