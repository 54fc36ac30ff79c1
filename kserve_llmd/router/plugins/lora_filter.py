"""``lora-affinity-filter``: for a LoRA request, keeps endpoints that have the adapter loaded or a free slot.

Formula: keep ``e`` iff ``lora ∈ running(e) ∪ waiting(e)`` or ``|running(e) ∪ waiting(e)| < max_lora(e)``; when
that leaves nothing (every endpoint full), all are kept (the engine queues the adapter swap).
Inputs: ``ctx.lora``, scraped ``vllm:lora_requests_info``. Requests without a LoRA pass unchanged.
Parameters: none.
"""

from __future__ import annotations

from collections.abc import Sequence

from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.plugins._base import NoParams, PluginDeps

TYPE = "lora-affinity-filter"
Parameters = NoParams


class LoraAffinityFilter:
    def __init__(self, name: str, params: NoParams, deps: PluginDeps) -> None:
        self.name = name

    def filter(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> Sequence[Endpoint]:
        lora = ctx.lora
        if lora is None:
            return endpoints
        kept = []
        for ep in endpoints:
            m = ep.metrics
            active = m.running_loras | m.waiting_loras
            if lora in active or len(active) < m.max_lora:
                kept.append(ep)
        return kept or endpoints
