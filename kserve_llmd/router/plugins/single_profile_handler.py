"""``single-profile-handler``: runs the one scheduling profile (configs with one profile only).

Parameters: none.
"""

from __future__ import annotations

from collections.abc import Sequence

from kserve_llmd.router.interfaces import RequestContext
from kserve_llmd.router.plugins._base import NoParams, PluginDeps

TYPE = "single-profile-handler"
Parameters = NoParams


class SingleProfileHandler:
    primary: str | None = None  # the scheduler sets it to the only profile's name

    def __init__(self, name: str, params: NoParams, deps: PluginDeps) -> None:
        self.name = name

    def profiles(self, ctx: RequestContext, available: Sequence[str]) -> Sequence[str]:
        return available[:1]
