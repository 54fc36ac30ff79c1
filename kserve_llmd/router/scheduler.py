"""The scheduling framework: profiles of filters → scorers → picker, run by a profile handler.

Per request (``Scheduler.schedule``)::

    ctx ─(needs prefix?)─▶ PrefixMatcher.match ─▶ ctx.prefix
        ─▶ ProfileHandler.profiles ─▶ for each profile:
              filters (in order) ─▶ shuffle (seeded: the tie-break) ─▶ scorers: clamp [0,1] × weight, summed
              ─▶ picker ─▶ target + fallbacks (the rest by total score, best first) ─▶ pre_request hooks

Plugins never clamp, weight or break ties: this module does. The result carries one pick per profile; the primary
profile's pick is where the request goes (the P/D flow reads the ``prefill`` profile's pick as well).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from kserve_llmd.router.interfaces import (
    Endpoint,
    Filter,
    Picker,
    PrefixMatcher,
    ProfileHandler,
    RequestContext,
    Scorer,
)


@runtime_checkable
class PreRequest(Protocol):
    """Optional plugin hook: told which endpoint its profile picked (session and LRU bookkeeping)."""

    def pre_request(self, ctx: RequestContext, endpoint: Endpoint) -> None: ...


@dataclass(slots=True)
class ProfileResult:
    profile: str
    target: Endpoint | None
    #: The other candidates, best total score first: where a failed connection retries.
    fallbacks: list[Endpoint] = field(default_factory=list)
    #: Name of the filter that left no candidate, when ``target`` is None.
    emptied_by: str | None = None


@dataclass(slots=True)
class SchedulingResult:
    primary_profile: str
    profiles: dict[str, ProfileResult]

    @property
    def primary(self) -> ProfileResult:
        return self.profiles[self.primary_profile]


class Profile:
    """One scheduling profile: filters, weighted scorers and one picker."""

    def __init__(
        self,
        name: str,
        filters: Sequence[Filter],
        scorers: Sequence[tuple[Scorer, float]],
        picker: Picker,
        rng: random.Random,
    ) -> None:
        self.name = name
        self.filters = tuple(filters)
        self.scorers = tuple(scorers)
        self.picker = picker
        self._rng = rng
        plugins: list[object] = [*self.filters, *(s for s, _ in self.scorers), picker]
        self._hooks = tuple(p for p in dict.fromkeys(plugins) if isinstance(p, PreRequest))

    def run(self, ctx: RequestContext, candidates: Sequence[Endpoint]) -> ProfileResult:
        endpoints = candidates
        for flt in self.filters:
            endpoints = flt.filter(ctx, endpoints)
            if not endpoints:
                return ProfileResult(self.name, None, emptied_by=flt.name)
        n = len(endpoints)
        if n == 1:
            target = endpoints[0]
            fallbacks: list[Endpoint] = []
        else:
            shuffled = list(endpoints)
            self._rng.shuffle(shuffled)  # the framework's tie-break: pickers take the first best
            totals = [0.0] * n
            for scorer, weight in self.scorers:
                values = scorer.score(ctx, shuffled)
                if len(values) != n:
                    raise RuntimeError(f"scorer {scorer.name!r} returned {len(values)} scores for {n} endpoints")
                for i, v in enumerate(values):
                    # clamp to [0, 1]; NaN counts as 0
                    totals[i] += weight * (1.0 if v > 1.0 else v if v >= 0.0 else 0.0)
            target = self.picker.pick(ctx, shuffled, totals)
            ranked = sorted(range(n), key=totals.__getitem__, reverse=True)
            fallbacks = [shuffled[i] for i in ranked if shuffled[i] is not target]
        for hook in self._hooks:
            hook.pre_request(ctx, target)
        return ProfileResult(self.name, target, fallbacks)


class Scheduler:
    def __init__(
        self,
        handler: ProfileHandler,
        profiles: Sequence[Profile],
        primary: str,
        matcher: PrefixMatcher | None = None,
    ) -> None:
        self.handler = handler
        self.profiles = {p.name: p for p in profiles}
        self.profile_names = tuple(self.profiles)
        self.primary = primary
        self.matcher = matcher

    @property
    def needs_prefix(self) -> bool:
        return self.matcher is not None

    def schedule(self, ctx: RequestContext, candidates: Sequence[Endpoint]) -> SchedulingResult:
        if self.matcher is not None and ctx.prefix is None:
            ctx.prefix = self.matcher.match(ctx, candidates)
        results = {}
        for name in self.handler.profiles(ctx, self.profile_names):
            results[name] = self.profiles[name].run(ctx, candidates)
        result = SchedulingResult(self.primary, results)
        target = result.primary.target
        if self.matcher is not None and target is not None:
            self.matcher.observe_routed(ctx, target)
        return result
