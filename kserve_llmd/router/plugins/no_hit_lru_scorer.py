"""``no-hit-lru-scorer``: spreads cold requests (no cached prefix anywhere) over the least recently used endpoints.

A cold request starts a new prefix; sending consecutive cold requests to different endpoints spreads future cache
growth. Formula: when no candidate holds any block of the prompt, order candidates by the time they last received
a cold request (never first); with ``n`` candidates, the ``i``-th in that order (0-based) scores
``1 - i / (n - 1)`` (endpoints never used tie at 1). Requests with a hit anywhere score 0.5 everywhere (neutral).
The recency list is updated when a cold request is picked (``pre_request``); it keeps ``lruSize`` entries.
Inputs: ``ctx.prefix``. Parameters: ``lruSize`` (≥1, default 1024).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from pydantic import Field

from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.plugins._base import NEUTRAL, Params, PluginDeps
from kserve_llmd.types import EndpointId

TYPE = "no-hit-lru-scorer"
_COLD = "no-hit-lru-scorer.cold"


class Parameters(Params):
    lruSize: int = Field(default=1024, ge=1)


class NoHitLRUScorer:
    def __init__(self, name: str, params: Parameters, deps: PluginDeps) -> None:
        self.name = name
        self._size = params.lruSize
        self._tick = 0
        self._last_cold: OrderedDict[EndpointId, int] = OrderedDict()

    def score(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> Sequence[float]:
        prefix = ctx.prefix
        cold = prefix is None or not any(prefix.matched_blocks.get(ep.id, 0) for ep in endpoints)
        ctx.cycle_state[_COLD] = cold
        n = len(endpoints)
        if not cold or n < 2:
            return [NEUTRAL] * n
        last = self._last_cold
        order = sorted(range(n), key=lambda i: last.get(endpoints[i].id, -1))
        scores = [0.0] * n
        for rank, i in enumerate(order):
            scores[i] = 1.0 if endpoints[i].id not in last else 1.0 - rank / (n - 1)
        return scores

    def pre_request(self, ctx: RequestContext, endpoint: Endpoint) -> None:
        if not ctx.cycle_state.get(_COLD):
            return
        self._tick += 1
        self._last_cold[endpoint.id] = self._tick
        self._last_cold.move_to_end(endpoint.id)
        while len(self._last_cold) > self._size:
            self._last_cold.popitem(last=False)
