"""``session-affinity-scorer``: sends a session back to the endpoint that served it before.

Formula: ``score(e) = 1`` if ``e`` served the request's session last (within ``ttlSeconds``), else 0. The session
is the ``x-session-token`` or ``x-session-id`` header (``ctx.session_id``); requests without one score 0 everywhere.
The endpoint is remembered when the request is picked (``pre_request``), in a bounded LRU of ``maxSessions``.
Parameters: ``maxSessions`` (≥1, default 100000), ``ttlSeconds`` (>0, default 3600).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from pydantic import Field

from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.plugins._base import Params, PluginDeps
from kserve_llmd.types import EndpointId

TYPE = "session-affinity-scorer"


class Parameters(Params):
    maxSessions: int = Field(default=100_000, ge=1)
    ttlSeconds: float = Field(default=3600.0, gt=0)


class SessionAffinityScorer:
    def __init__(self, name: str, params: Parameters, deps: PluginDeps) -> None:
        self.name = name
        self._p = params
        self._clock = deps.clock
        self._sessions: OrderedDict[str, tuple[EndpointId, float]] = OrderedDict()

    def score(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> Sequence[float]:
        session = ctx.session_id
        entry = self._sessions.get(session) if session is not None else None
        if entry is None or self._clock() - entry[1] > self._p.ttlSeconds:
            return [0.0] * len(endpoints)
        target = entry[0]
        return [1.0 if ep.id == target else 0.0 for ep in endpoints]

    def pre_request(self, ctx: RequestContext, endpoint: Endpoint) -> None:
        session = ctx.session_id
        if session is None:
            return
        self._sessions[session] = (endpoint.id, self._clock())
        self._sessions.move_to_end(session)
        while len(self._sessions) > self._p.maxSessions:
            self._sessions.popitem(last=False)
