"""The router's live set of endpoints: discovery events applied in place, candidates per model, model union.

An ``Endpoint`` object is created once per engine and mutated in place (health, scraped metrics, in-flight counts),
so the scheduler, the scraper and the proxy all see the same state without copies or locks (one event loop).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from kserve_llmd.router.interfaces import Endpoint, EndpointEvent, RequestContext
from kserve_llmd.types import JSON, EndpointId


def endpoint_id(url: str) -> EndpointId:
    """``host:port`` of a base URL (the port defaults by scheme)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


class PrefillHold:
    """One request's share of ``Endpoint.prefill_tokens``: its prompt tokens that ``ep`` does not cache (by the
    request's prefix match; all of them without one), added now and taken back once by ``release`` (at the first
    answer byte, or when the attempt ends without one)."""

    __slots__ = ("_ep", "_tokens")

    def __init__(self, ep: Endpoint, ctx: RequestContext) -> None:
        prefix = ctx.prefix
        cached = 0.0 if prefix is None else prefix.ratio(ep.id) * ctx.prompt_tokens
        self._tokens = max(ctx.prompt_tokens - int(cached), 0)
        self._ep = ep
        ep.prefill_tokens += self._tokens

    def release(self) -> None:
        if self._tokens:
            self._ep.prefill_tokens -= self._tokens
            self._tokens = 0


class EndpointRegistry:
    def __init__(self) -> None:
        self._by_id: dict[EndpointId, Endpoint] = {}
        self._next_index = 0
        #: Model cards (``/v1/models`` entries) per endpoint, as last fetched.
        self._cards: dict[EndpointId, list[JSON]] = {}
        self._lora_names: frozenset[str] = frozenset()

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, ep_id: EndpointId) -> Endpoint | None:
        return self._by_id.get(ep_id)

    def apply(self, event: EndpointEvent) -> Endpoint | None:
        """Add, update or remove; returns the registry's own ``Endpoint`` object (None when removed)."""
        ep = event.endpoint
        if event.kind == "removed":
            self._by_id.pop(ep.id, None)
            self._cards.pop(ep.id, None)
            self._refresh_loras()
            return None
        current = self._by_id.get(ep.id)
        if current is None:
            ep.index = self._next_index
            self._next_index += 1
            self._by_id[ep.id] = ep
            return ep
        current.url, current.role, current.labels = ep.url, ep.role, ep.labels
        if ep.kv_events is not None:
            current.kv_events = ep.kv_events
        if ep.kv_events_replay is not None:
            current.kv_events_replay = ep.kv_events_replay
        return current

    # ----------------------------------------------------------------------------------------- models

    def set_models(self, ep: Endpoint, cards: list[JSON]) -> None:
        ids = frozenset(str(c["id"]) for c in cards if isinstance(c, dict) and "id" in c)
        ep.models = ids
        self._cards[ep.id] = [c for c in cards if isinstance(c, dict) and "id" in c]
        self._refresh_loras()

    def _refresh_loras(self) -> None:
        self._lora_names = frozenset(
            str(c["id"]) for cards in self._cards.values() for c in cards if c.get("parent") not in (None, c["id"])
        )

    def is_lora(self, model: str) -> bool:
        return model in self._lora_names

    def knows_all_models(self) -> bool:
        """True when every endpoint's model list has been fetched at least once."""
        return all(ep.id in self._cards for ep in self._by_id.values())

    def model_cards(self) -> list[JSON]:
        """The union of every endpoint's ``/v1/models`` entries (first seen wins), sorted by id."""
        union: dict[str, Any] = {}
        for cards in self._cards.values():
            for card in cards:
                union.setdefault(str(card["id"]), card)
        return [union[k] for k in sorted(union)]

    # ----------------------------------------------------------------------------------------- request path

    def candidates(self, model: str) -> list[Endpoint]:
        """Healthy endpoints serving ``model``."""
        return [ep for ep in self._by_id.values() if ep.healthy and model in ep.models]

    def serves(self, model: str) -> bool:
        return any(model in ep.models for ep in self._by_id.values())

    def healthy_count(self) -> int:
        return sum(1 for ep in self._by_id.values() if ep.healthy)

    def base_model(self, model: str) -> str:
        """The base model of a LoRA adapter (its ``parent`` in ``/v1/models``); the model itself otherwise."""
        for cards in self._cards.values():
            for card in cards:
                if card.get("id") == model and isinstance(card.get("parent"), str):
                    return str(card["parent"])
        return model

    def base_models(self, ep: Endpoint) -> list[str]:
        """The models an endpoint serves that are not LoRA adapters."""
        return sorted(str(c["id"]) for c in self._cards.get(ep.id, []) if c.get("parent") in (None, c["id"]))
