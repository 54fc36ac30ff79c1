"""``random-picker``: a uniformly random candidate (scores ignored), from the injected seeded ``random.Random``.

Parameters: ``maxNumOfEndpoints`` (llm-d compatibility; must be 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.plugins._base import Params, PluginDeps

TYPE = "random-picker"


class Parameters(Params):
    maxNumOfEndpoints: Literal[1] = 1


class RandomPicker:
    def __init__(self, name: str, params: Parameters, deps: PluginDeps) -> None:
        self.name = name
        self._rng = deps.rng

    def pick(self, ctx: RequestContext, endpoints: Sequence[Endpoint], scores: Sequence[float]) -> Endpoint:
        return endpoints[self._rng.randrange(len(endpoints))]
