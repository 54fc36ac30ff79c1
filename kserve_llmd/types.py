"""Type aliases shared across the package (one place, so the names mean one thing everywhere)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias

#: A JSON object as parsed from or sent on the wire.
JSON: TypeAlias = dict[str, Any]
#: Token ids of a prompt or an output.
TokenIds: TypeAlias = Sequence[int]
#: The router's own chained block key (see ``router/hashing.py``): an unsigned 64-bit int.
BlockKey: TypeAlias = int
#: A block hash as the ENGINE published it (vLLM: unsigned 64-bit int, or last 8 bytes of the digest).
EngineBlockHash: TypeAlias = int
#: An endpoint's identity: ``host:port`` of its OpenAI server (stable across the router's lifetime).
EndpointId: TypeAlias = str
#: A monotonic clock in seconds; injected everywhere decisions depend on time.
Clock: TypeAlias = Callable[[], float]
#: The pool an engine serves in (llm-d's ``llm-d.ai/role`` label values).
Role: TypeAlias = Literal["both", "prefill", "decode"]
#: Storage tier a KV block lives on, as vLLM names it in events.
Medium: TypeAlias = str

ROLES: tuple[Role, ...] = ("both", "prefill", "decode")
