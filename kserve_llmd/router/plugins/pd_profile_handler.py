"""``pd-profile-handler``: the prefill/decode seam. Always runs the decode profile; also runs the prefill profile
when the prompt is long enough to be worth disaggregating.

Formula: profiles = ``[decodeProfile]`` + ``[prefillProfile]`` if ``prompt_tokens >= threshold``. The decode pick is
the request's primary target; the prefill pick is carried in ``SchedulingResult`` for the P/D flow to use
(a ``prefix-based-pd-decider`` that looks at the uncached part on the chosen decode endpoint plugs in here).
Parameters: ``threshold`` (prompt tokens, ≥0, default 0: always), ``decodeProfile`` ("decode"),
``prefillProfile`` ("prefill").
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from kserve_llmd.router.interfaces import RequestContext
from kserve_llmd.router.plugins._base import Params, PluginDeps

TYPE = "pd-profile-handler"


class Parameters(Params):
    threshold: int = Field(default=0, ge=0)
    decodeProfile: str = "decode"
    prefillProfile: str = "prefill"


class PDProfileHandler:
    def __init__(self, name: str, params: Parameters, deps: PluginDeps) -> None:
        self.name = name
        self.params = params
        self.primary = params.decodeProfile

    def profiles(self, ctx: RequestContext, available: Sequence[str]) -> Sequence[str]:
        if ctx.prompt_tokens >= self.params.threshold:
            return (self.params.decodeProfile, self.params.prefillProfile)
        return (self.params.decodeProfile,)
