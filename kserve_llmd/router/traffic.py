"""Weighted traffic between versions of a model, for canaries: ``model → [(version, weight, endpoints)]``.

A request for a model that has a split goes to ONE version, chosen by a seeded weighted draw (or pinned with the
``x-llmd-version`` header, for benchmarks and smoke tests of one version); the scheduler then picks among that
version's endpoints only. A model without a split is routed as usual.

Updates never disturb in-flight requests: the table is an immutable mapping of immutable routes, and ``set`` /
``remove`` build a new table and swap the one reference (a single assignment, atomic under the GIL and trivially so
on the event loop). A request reads the table once, so it sees the old split or the new one, never a mix, and the
version it already chose stays valid until it finishes.

Admin body (``PUT /admin/traffic``)::

    {"model": "m", "versions": [
        {"name": "stable", "weight": 90, "endpoints": ["http://10.0.0.5:8000"]},
        {"name": "canary", "weight": 10, "endpoints": ["http://10.0.0.9:8000"]}]}

Weights are relative (need not sum to 100); weight 0 takes no weighted traffic but can still be pinned.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kserve_llmd.errors import BodyTooLargeError, InvalidRequestError, KserveLlmdError, ModelNotFoundError
from kserve_llmd.http import parse_json_object
from kserve_llmd.router.endpoints import endpoint_id
from kserve_llmd.router.messages import Request, Response, Routes

#: Request header that pins a request to one version of a split model.
VERSION_HEADER = "x-llmd-version"


class VersionWeight(BaseModel):
    """One version of a model in a split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    weight: float = Field(ge=0)
    endpoints: tuple[str, ...] = Field(min_length=1)

    @field_validator("endpoints")
    @classmethod
    def _urls(cls, endpoints: tuple[str, ...]) -> tuple[str, ...]:
        for url in endpoints:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"endpoint {url!r} is not an http(s) URL")
        return tuple(url.rstrip("/") for url in endpoints)

    @cached_property
    def endpoint_ids(self) -> frozenset[str]:
        """``host:port`` of every endpoint, computed once per version (not per routed request)."""
        return frozenset(endpoint_id(url) for url in self.endpoints)


class TrafficUpdate(BaseModel):
    """The admin body: the complete split of one model (replaces any previous split of that model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    versions: tuple[VersionWeight, ...] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _consistent(self) -> TrafficUpdate:
        names = [v.name for v in self.versions]
        if len(set(names)) != len(names):
            raise ValueError(f"version names must be unique, got {names}")
        if sum(v.weight for v in self.versions) <= 0:
            raise ValueError("at least one version needs a weight above 0")
        return self


@dataclass(frozen=True, slots=True)
class _Route:
    versions: tuple[VersionWeight, ...]
    cumulative: tuple[float, ...]
    by_name: Mapping[str, VersionWeight]

    @classmethod
    def build(cls, update: TrafficUpdate) -> _Route:
        cumulative = tuple(itertools.accumulate(v.weight for v in update.versions))
        by_name = MappingProxyType({v.name: v for v in update.versions})
        return cls(versions=update.versions, cumulative=cumulative, by_name=by_name)

    def draw(self, rng: random.Random) -> VersionWeight:
        point = rng.random() * self.cumulative[-1]
        # bisect_right skips zero-weight versions: their cumulative value equals the previous one.
        return self.versions[min(bisect.bisect_right(self.cumulative, point), len(self.versions) - 1)]


class TrafficSplit:
    """The live split table. ``choose`` on the request path; ``apply`` / ``remove`` from the admin endpoint."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._table: Mapping[str, _Route] = MappingProxyType({})

    def apply(self, update: TrafficUpdate) -> None:
        table = dict(self._table)
        table[update.model] = _Route.build(update)
        self._table = MappingProxyType(table)  # the one atomic swap

    def remove(self, model: str) -> bool:
        if model not in self._table:
            return False
        table = {name: route for name, route in self._table.items() if name != model}
        self._table = MappingProxyType(table)
        return True

    def choose(self, model: str, pinned: str | None = None) -> VersionWeight | None:
        """The version this request goes to; ``None`` when ``model`` has no split (route as usual)."""
        route = self._table.get(model)  # read the table ONCE: old or new split, never a mix
        if route is None:
            if pinned is not None:
                raise InvalidRequestError(f"model {model!r} has no traffic split; cannot pin version {pinned!r}")
            return None
        if pinned is not None:
            version = route.by_name.get(pinned)
            if version is None:
                known = ", ".join(route.by_name)
                raise InvalidRequestError(f"model {model!r} has no version {pinned!r} (versions: {known})")
            return version
        return route.draw(self._rng)

    def snapshot(self) -> dict[str, list[dict[str, object]]]:
        """The table as JSON (``GET /admin/traffic``)."""
        table = self._table
        return {model: [v.model_dump(mode="json") for v in route.versions] for model, route in table.items()}

    def endpoints(self) -> set[str]:
        """Every endpoint URL any split refers to (the router must know them all)."""
        return {url for route in self._table.values() for v in route.versions for url in v.endpoints}


class TrafficAdmin:
    """``PUT /admin/traffic`` (a ``TrafficUpdate``), ``GET /admin/traffic``, ``DELETE /admin/traffic/{model}``.

    ``auth`` raises ``AuthenticationError`` when the router's API key is set and the request lacks it;
    ``ensure_endpoints`` makes the router know every endpoint URL of an update BEFORE the new table goes live, so no
    request is ever split towards an endpoint the router cannot yet reach. Endpoints are never removed here: a
    version that should stop taking traffic gets weight 0 (in-flight requests to it finish undisturbed).
    """

    def __init__(
        self,
        split: TrafficSplit,
        *,
        auth: Callable[[Request], None],
        ensure_endpoints: Callable[[Sequence[str]], Awaitable[None]],
        max_body_bytes: int = 64 * 1024,
    ) -> None:
        self._split = split
        self._auth = auth
        self._ensure = ensure_endpoints
        self._max_body = max_body_bytes

    def add_routes(self, routes: Routes) -> None:
        routes.add("PUT", "/admin/traffic", self.put)
        routes.add("GET", "/admin/traffic", self.get)
        routes.add("DELETE", "/admin/traffic/", self.delete, prefix=True)  # /admin/traffic/{model}

    async def put(self, request: Request) -> Response:
        try:
            self._auth(request)
            if len(request.body) > self._max_body:
                raise BodyTooLargeError(f"traffic update of {len(request.body)} bytes is over the limit of "
                                        f"{self._max_body} bytes")
            body = parse_json_object(request.body)
            try:
                update = TrafficUpdate.model_validate(body)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "(root)"
                raise InvalidRequestError(f"traffic update: {where}: {first['msg']}", param=where) from None
            await self._ensure([url for v in update.versions for url in v.endpoints])
            self._split.apply(update)
        except KserveLlmdError as exc:
            return Response.error(exc)
        return Response.json(self._split.snapshot())

    def get(self, request: Request) -> Response:
        try:
            self._auth(request)
        except KserveLlmdError as exc:
            return Response.error(exc)
        return Response.json(self._split.snapshot())

    def delete(self, request: Request) -> Response:
        try:
            self._auth(request)
            model = request.tail
            if not self._split.remove(model):
                raise ModelNotFoundError(f"model {model!r} has no traffic split", param="model")
        except KserveLlmdError as exc:
            return Response.error(exc)
        return Response.json(self._split.snapshot())
