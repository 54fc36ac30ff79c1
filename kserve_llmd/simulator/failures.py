"""Failure injection: a table of OpenAI-shaped errors, one drawn per request with probability ``rate``.

Draws come from the engine's seeded ``random.Random`` (first ``random() < rate``, then ``choice(types)``), so a run
with the same seed and request order fails the same requests. Names follow llm-d-inference-sim's
``--failure-types``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from kserve_llmd.errors import (
    AuthenticationError,
    ContextLengthError,
    InvalidRequestError,
    KserveLlmdError,
    ModelNotFoundError,
    RateLimitedError,
)

FAILURES: dict[str, Callable[[str], KserveLlmdError]] = {
    "rate_limit": lambda model: RateLimitedError(f"Rate limit reached for {model} (injected failure)"),
    "invalid_api_key": lambda model: AuthenticationError("Incorrect API key provided (injected failure)"),
    "context_length": lambda model: ContextLengthError(
        "This model's maximum context length has been exceeded (injected failure)", param="messages"),
    "server_error": lambda model: KserveLlmdError("Internal server error (injected failure)"),
    "model_not_found": lambda model: ModelNotFoundError(
        f"The model `{model}-nonexistent` does not exist. (injected failure)", param="model"),
    "invalid_request": lambda model: InvalidRequestError("Invalid request (injected failure)"),
}


class FailureInjector:
    def __init__(self, rate: float, types: Sequence[str], rng: random.Random, model: str) -> None:
        unknown = [t for t in types if t not in FAILURES]
        if unknown:
            raise ValueError(f"unknown failure types {unknown}; known: {sorted(FAILURES)}")
        self._rate = rate
        self._types = list(types)
        self._rng = rng
        self._model = model
        self.injected = 0

    def maybe_fail(self) -> None:
        """Raise an injected error for this request, or return."""
        if self._rate <= 0 or self._rng.random() >= self._rate:
            return
        self.injected += 1
        raise FAILURES[self._rng.choice(self._types)](self._model)
