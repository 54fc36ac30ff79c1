"""What a workload asks for (``BenchRequest``) and what the client measured (``RequestRecord``).

Times are integer nanoseconds from an injected clock (``time.perf_counter_ns`` in real runs) and are written out in
milliseconds. A record's ``start_ns`` is relative to the start of its run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kserve_llmd.types import JSON

#: A monotonic clock in integer nanoseconds (``time.perf_counter_ns``); injected so tests can drive time.
NsClock = Callable[[], int]

COMPLETIONS = "/v1/completions"
CHAT_COMPLETIONS = "/v1/chat/completions"

_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class BenchRequest:
    """One request produced by a workload: either ``prompt`` (completions) or ``messages`` (chat)."""

    index: int
    max_tokens: int
    prompt: str | None = None
    messages: tuple[JSON, ...] | None = None
    prompt_tokens: int = 0  # expected prompt length under the built-in tokenizer (0 when unknown)
    headers: tuple[tuple[str, str], ...] = ()
    group: str | None = None  # prefix group or session the request belongs to
    arrival_s: float | None = None  # trace replay: when to send, relative to the trace start

    @property
    def path(self) -> str:
        return CHAT_COMPLETIONS if self.messages is not None else COMPLETIONS

    def body(self, model: str) -> JSON:
        """The streaming OpenAI body (vLLM's ``ignore_eos`` makes the engine produce exactly ``max_tokens``)."""
        body: JSON = {
            "model": model,
            "max_tokens": self.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "ignore_eos": True,
            "temperature": 0.0,
        }
        if self.messages is not None:
            body["messages"] = list(self.messages)
        else:
            body["prompt"] = self.prompt or ""
        return body


@dataclass(slots=True)
class RequestRecord:
    """Everything measured for one request. ``ttft_ns`` and ``itl_ns`` count only SSE chunks that carry text."""

    index: int
    level: str
    warmup: bool = False
    group: str | None = None
    start_ns: int = 0
    ttft_ns: int | None = None
    itl_ns: list[int] = field(default_factory=list)
    e2e_ns: int | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    output_tokens: int | None = None
    chunks: int = 0
    status: int | None = None
    error: str | None = None
    routed_to: str | None = None  # the router's ``X-Routed-To`` answer header: the engine it picked

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200 and self.e2e_ns is not None

    @property
    def tpot_ns(self) -> float | None:
        """(E2E − TTFT) / (output_tokens − 1), vLLM's definition; ``None`` for fewer than two output tokens."""
        if self.ttft_ns is None or self.e2e_ns is None or self.output_tokens is None or self.output_tokens < 2:
            return None
        return (self.e2e_ns - self.ttft_ns) / (self.output_tokens - 1)

    @property
    def end_ns(self) -> int | None:
        return None if self.e2e_ns is None else self.start_ns + self.e2e_ns

    def to_json(self) -> dict[str, Any]:
        tpot = self.tpot_ns
        return {
            "index": self.index,
            "level": self.level,
            "warmup": self.warmup,
            "group": self.group,
            "start_s": self.start_ns / 1e9,
            "ttft_ms": _ms(self.ttft_ns),
            "itl_ms": [i / _NS_PER_MS for i in self.itl_ns],
            "tpot_ms": None if tpot is None else tpot / _NS_PER_MS,
            "e2e_ms": _ms(self.e2e_ns),
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "output_tokens": self.output_tokens,
            "chunks": self.chunks,
            "status": self.status,
            "error": self.error,
            "routed_to": self.routed_to,
        }


def _ms(ns: int | None) -> float | None:
    return None if ns is None else ns / _NS_PER_MS
