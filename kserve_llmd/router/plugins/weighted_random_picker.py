"""``weighted-random-picker``: a random candidate with probability proportional to its total score.

Formula: ``P(e) = s_e / Σ s``; uniform when every score is 0. Randomness from the injected seeded
``random.Random``. Parameters: ``maxNumOfEndpoints`` (llm-d compatibility; must be 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.plugins._base import Params, PluginDeps

TYPE = "weighted-random-picker"


class Parameters(Params):
    maxNumOfEndpoints: Literal[1] = 1


class WeightedRandomPicker:
    def __init__(self, name: str, params: Parameters, deps: PluginDeps) -> None:
        self.name = name
        self._rng = deps.rng

    def pick(self, ctx: RequestContext, endpoints: Sequence[Endpoint], scores: Sequence[float]) -> Endpoint:
        total = sum(scores)
        if total <= 0:
            return endpoints[self._rng.randrange(len(endpoints))]
        x = self._rng.random() * total
        for ep, s in zip(endpoints, scores, strict=True):
            x -= s
            if x < 0:
                return ep
        return endpoints[-1]
