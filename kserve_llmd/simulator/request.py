"""One request inside a simulated engine: its tokens, progress, cache state and timestamps.

Token accounting follows vLLM v1: ``token_ids`` = prompt + output so far; ``num_computed_tokens`` counts tokens
whose KV is in the cache. A step schedules ``num_tokens - num_computed_tokens`` tokens (the remaining prompt, or 1
when decoding); when a step brings ``num_computed_tokens`` to ``num_tokens`` the engine samples one new token.
A preempted request drops to ``num_computed_tokens = 0`` and recomputes prompt + output later (cache hits help).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"


@dataclass(slots=True)
class Sampling:
    """The generation controls the simulator honours."""

    max_tokens: int
    min_tokens: int = 0
    stop: tuple[str, ...] = ()
    stop_token_ids: frozenset[int] = frozenset()
    ignore_eos: bool = False


@dataclass(slots=True, eq=False)
class SimRequest:
    request_id: str
    prompt_token_ids: list[int]
    sampling: Sampling
    arrival: float
    cache_salt: str | None = None
    stream: bool = False
    do_remote_decode: bool = False  # P/D: this is the prefill leg; hold the blocks under a lease when done
    external_tokens: int = 0  # P/D decode leg: prompt tokens whose KV was pulled from the prefill engine
    leased: tuple[str, list[int]] | None = None  # P/D prefill leg: (transfer id, block ids) held under a lease
    token_ids: list[int] = field(default_factory=list)
    output_token_ids: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0
    num_cached_tokens: int = -1  # prefix-cache hit tokens at first admission (-1: not admitted yet)
    num_preemptions: int = 0
    status: Status = Status.WAITING
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    error: BaseException | None = None
    first_scheduled: float | None = None
    first_token_time: float | None = None
    last_token_time: float | None = None
    finished_time: float | None = None
    done: asyncio.Future[None] | None = None
    changed: asyncio.Event | None = None  # set on every new token (streaming only)

    def __post_init__(self) -> None:
        if not self.token_ids:
            self.token_ids = list(self.prompt_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def finished(self) -> bool:
        return self.status in (Status.FINISHED, Status.ABORTED)
