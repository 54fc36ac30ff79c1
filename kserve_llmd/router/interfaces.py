"""The router's extension points, in one place.

Data flow per request::

    HTTP body ──parse──▶ RequestContext ──tokenize/hash──▶ PrefixMatcher.match ──▶ PrefixMatch
                              │                                                       │
                              ▼                                                       ▼
    Discovery ──▶ [Endpoint] ──▶ ProfileHandler ─▶ Filters ─▶ Scorers (each in [0,1], weighted) ─▶ Picker
                                                                                         │
                                                                      chosen Endpoint ◀──┘

Indexing (from engine KV events) is separate from matching: ``KVIndex`` is written by the event ingester and only
read, through ``PrefixMatcher``, on the request path. Plugins never clamp, weight or break ties: the scheduler does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kserve_llmd.types import BlockKey, EndpointId, Role


@dataclass(slots=True)
class EngineMetrics:
    """The last scrape of an engine's ``/metrics`` (vLLM names)."""

    running: float = 0.0
    waiting: float = 0.0
    kv_usage: float = 0.0  # 0..1
    scraped_at: float = float("-inf")  # router clock; stale when too old
    running_loras: frozenset[str] = frozenset()
    waiting_loras: frozenset[str] = frozenset()
    max_lora: int = 0


@dataclass(slots=True, eq=False)
class Endpoint:
    """One engine the router can send to. ``id`` is ``host:port``; mutable state is updated in place."""

    id: EndpointId
    url: str  # base URL, e.g. http://10.0.0.5:8000
    role: Role = "both"
    models: frozenset[str] = frozenset()
    kv_events: str | None = None  # ZMQ endpoint of its KV-event publisher, if known
    kv_events_replay: str | None = None  # ZMQ endpoint of that publisher's replay ROUTER, if given explicitly
    healthy: bool = True
    metrics: EngineMetrics = field(default_factory=EngineMetrics)
    # What the router itself knows, updated at pick time and on completion (not only from scrapes).
    inflight_requests: int = 0
    inflight_tokens: int = 0
    #: Uncached prompt tokens of the requests in flight there whose first answer byte has not arrived yet: the
    #: prefill work queued on that engine, which is what delays a new request's first token. A non-streamed answer
    #: shows no first token before its end, so its prompt counts until then.
    prefill_tokens: int = 0
    index: int = 0  # dense slot number, assigned by the endpoint registry (used for bitmasks)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class PrefixMatch:
    """How many leading blocks of the prompt each endpoint holds (longest CONSECUTIVE prefix)."""

    total_blocks: int
    matched_blocks: dict[EndpointId, int]
    block_size: int

    def ratio(self, endpoint: EndpointId) -> float:
        if self.total_blocks == 0:
            return 0.0
        return self.matched_blocks.get(endpoint, 0) / self.total_blocks


@dataclass(slots=True)
class RequestContext:
    """Everything the scheduler may look at for one request; built once, parsed once."""

    request_id: str
    model: str
    path: str  # /v1/completions or /v1/chat/completions
    body: dict[str, Any]
    prompt_tokens: int = 0
    token_ids: Sequence[int] | None = None  # None in approximate mode
    prompt_text: str | None = None
    lora: str | None = None
    cache_salt: str | None = None
    session_id: str | None = None
    max_tokens: int = 0
    stream: bool = False
    prefix: PrefixMatch | None = None  # filled by the prefix matcher before scoring
    cycle_state: dict[str, Any] = field(default_factory=dict)  # per-request scratch shared by plugins


class Filter(Protocol):
    """Keeps the endpoints a request may go to. Returns a (possibly empty) sub-list, order preserved."""

    name: str

    def filter(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> Sequence[Endpoint]: ...


class Scorer(Protocol):
    """Scores each endpoint in [0, 1] (1 = best). One value per endpoint, aligned with ``endpoints``."""

    name: str

    def score(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> Sequence[float]: ...


class Picker(Protocol):
    """Chooses one endpoint from weighted total scores (aligned with ``endpoints``)."""

    name: str

    def pick(self, ctx: RequestContext, endpoints: Sequence[Endpoint], scores: Sequence[float]) -> Endpoint: ...


class ProfileHandler(Protocol):
    """Chooses which scheduling profiles run for a request (e.g. ``decode`` only, or ``prefill`` + ``decode``)."""

    name: str

    def profiles(self, ctx: RequestContext, available: Sequence[str]) -> Sequence[str]: ...


@dataclass(slots=True, frozen=True)
class PDDecision:
    """A P/D decider's answer: disaggregate or not, and why (a metric label)."""

    disaggregate: bool
    reason: str


class PDDecider(Protocol):
    """Prefill/decode: given the decode and prefill picks, run the prompt on the prefill engine or not."""

    name: str

    def decide(self, ctx: RequestContext, decode: Endpoint, prefill: Endpoint) -> PDDecision: ...


class KVIndex(Protocol):
    """Block key → endpoints holding it. Written by event ingestion, read by matching. Bounded (LRU)."""

    def add(self, endpoint: EndpointId, keys: Sequence[BlockKey], medium: str | None = None) -> None: ...

    def remove(self, endpoint: EndpointId, keys: Sequence[BlockKey]) -> None: ...

    def clear(self, endpoint: EndpointId) -> None: ...

    def match(self, keys: Sequence[BlockKey], endpoints: Sequence[EndpointId]) -> dict[EndpointId, int]: ...

    def __len__(self) -> int: ...


class PrefixMatcher(Protocol):
    """Per-request: how much of this prompt each endpoint already caches (precise or approximate)."""

    def match(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> PrefixMatch: ...

    def observe_routed(self, ctx: RequestContext, endpoint: Endpoint) -> None:
        """Approximate mode learns from its own decisions; the precise (event-fed) matcher ignores this."""
        ...


@dataclass(slots=True, frozen=True)
class EndpointEvent:
    kind: str  # "added" | "updated" | "removed"
    endpoint: Endpoint


class Discovery(Protocol):
    """Where endpoints come from: a static list, or Kubernetes pods (list + watch)."""

    def snapshot(self) -> Sequence[Endpoint]: ...

    def watch(self) -> AsyncIterator[EndpointEvent]: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...
