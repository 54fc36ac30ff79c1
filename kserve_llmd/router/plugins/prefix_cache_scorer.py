"""``prefix-cache-scorer`` and ``precise-prefix-cache-scorer``: how much of the prompt an endpoint caches.

Formula: ``score(e) = matched_blocks(e) / prompt_blocks`` from the request's ``PrefixMatch`` (longest consecutive
prefix), 0 when the prompt has no full block. Inputs: ``ctx.prefix``, filled once per request by the scheduler
through the router's ``PrefixMatcher``; the scorer only reads it.

The two type names choose the matcher, as in llm-d: ``prefix-cache-scorer`` estimates (approximate matcher, learns
from the router's own decisions, no events); ``precise-prefix-cache-scorer`` reads the index fed by the engines'
KV events. Parameters (both): ``blockSize`` (tokens per block, default 16; alias ``hashBlockSize``),
``maxPrefixBlocksToMatch`` (default 256: only the prompt's first 256 blocks are keyed and matched, so a longer
prompt scores by the share of that head it finds cached), ``lruCapacityPerServer`` (blocks remembered per endpoint,
approximate mode, default 31250), ``hashSeed`` (accepted so that llm-d configs load, and without effect: llm-d needs
it to equal the engines' ``PYTHONHASHSEED`` because it recomputes the engines' own block hashes, while this router
matches its own keys, mapped from the engines' hashes through the events' token ids). Precise only, as in llm-d:
``speculativeIndexing`` (default false: count the blocks of a request just routed to an endpoint as cached there
until its own events arrive, ``speculative.py``) and ``speculativeTTL`` (Go duration, default "2s": how long).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, field_validator

from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.plugins._base import Params, PluginDeps
from kserve_llmd.router.speculative import go_duration

TYPE = "prefix-cache-scorer"
PRECISE_TYPE = "precise-prefix-cache-scorer"
MatcherMode = Literal["approximate", "precise"]


class Parameters(Params):
    blockSize: int | None = Field(default=None, ge=1, le=4096)
    hashBlockSize: int | None = Field(default=None, ge=1, le=4096)
    maxPrefixBlocksToMatch: int = Field(default=256, ge=1)
    lruCapacityPerServer: int = Field(default=31250, ge=1)
    hashSeed: str = ""
    speculativeIndexing: bool = False
    speculativeTTL: str = "2s"

    @field_validator("speculativeTTL")
    @classmethod
    def _positive_duration(cls, value: str) -> str:
        if go_duration(value) <= 0:
            raise ValueError(f"{value!r} must be longer than zero")
        return value

    @property
    def block_size(self) -> int:
        return self.blockSize or self.hashBlockSize or 16

    @property
    def speculative_ttl_s(self) -> float | None:
        """Seconds speculative entries live; None when speculative indexing is off."""
        return go_duration(self.speculativeTTL) if self.speculativeIndexing else None


class PrefixCacheScorer:
    def __init__(self, name: str, params: Parameters, deps: PluginDeps, mode: MatcherMode) -> None:
        self.name = name
        self.params = params
        self.mode: MatcherMode = mode

    def score(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> Sequence[float]:
        prefix = ctx.prefix
        if prefix is None or prefix.total_blocks == 0:
            return [0.0] * len(endpoints)
        total = prefix.total_blocks
        matched = prefix.matched_blocks
        return [matched.get(ep.id, 0) / total for ep in endpoints]
