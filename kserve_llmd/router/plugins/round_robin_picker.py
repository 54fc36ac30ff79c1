"""``round-robin-picker``: cycles through the candidates in a stable order (their registry slot), scores ignored.

Formula: the ``k``-th pick takes candidate ``k mod n`` of the candidates sorted by ``Endpoint.index``.
Parameters: none.
"""

from __future__ import annotations

from collections.abc import Sequence

from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.plugins._base import NoParams, PluginDeps

TYPE = "round-robin-picker"
Parameters = NoParams


class RoundRobinPicker:
    def __init__(self, name: str, params: NoParams, deps: PluginDeps) -> None:
        self.name = name
        self._next = 0

    def pick(self, ctx: RequestContext, endpoints: Sequence[Endpoint], scores: Sequence[float]) -> Endpoint:
        ordered = sorted(endpoints, key=lambda ep: ep.index)
        chosen = ordered[self._next % len(ordered)]
        self._next += 1
        return chosen
