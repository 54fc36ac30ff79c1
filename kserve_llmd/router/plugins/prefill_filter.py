"""``prefill-filter``: keeps the prefill pool (role ``prefill``), for the prefill profile of P/D.

Inputs: ``Endpoint.role``. Parameters: none. Order is preserved; the result may be empty.
"""

from __future__ import annotations

from collections.abc import Sequence

from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.plugins._base import NoParams, PluginDeps

TYPE = "prefill-filter"
Parameters = NoParams


class PrefillFilter:
    def __init__(self, name: str, params: NoParams, deps: PluginDeps) -> None:
        self.name = name

    def filter(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> Sequence[Endpoint]:
        return [ep for ep in endpoints if ep.role == "prefill"]
