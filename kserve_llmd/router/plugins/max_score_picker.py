"""``max-score-picker``: the endpoint with the highest weighted total score.

Ties are broken by the framework: candidates reach the picker in an order shuffled with the scheduler's seeded
``random.Random``, and this picker takes the first maximum. Parameters: ``maxNumOfEndpoints`` (accepted for llm-d
compatibility; must be 1 — the router sends each request to one endpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.plugins._base import Params, PluginDeps

TYPE = "max-score-picker"


class Parameters(Params):
    maxNumOfEndpoints: Literal[1] = 1


class MaxScorePicker:
    def __init__(self, name: str, params: Parameters, deps: PluginDeps) -> None:
        self.name = name

    def pick(self, ctx: RequestContext, endpoints: Sequence[Endpoint], scores: Sequence[float]) -> Endpoint:
        best = 0
        best_score = scores[0]
        for i in range(1, len(scores)):
            if scores[i] > best_score:
                best, best_score = i, scores[i]
        return endpoints[best]
