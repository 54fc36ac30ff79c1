"""What every plugin gets: a strict parameter base model and the injected dependencies."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from kserve_llmd.router.interfaces import Endpoint
from kserve_llmd.types import Clock


class Params(BaseModel):
    """Base of every plugin's parameter model: unknown fields are errors; camelCase names as in llm-d."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    pass


@dataclass(slots=True)
class PluginDeps:
    """Injected into plugin factories. Decision logic reads time only through ``clock``."""

    clock: Clock
    rng: random.Random
    #: Scraped metrics older than this many seconds are stale (unknown).
    stale_after: float = 1.0
    #: Called once per stale endpoint a scorer had to treat as unknown (counted in the router's metrics).
    on_stale: Callable[[Endpoint], None] = field(default=lambda _ep: None)

    def fresh(self, endpoint: Endpoint, now: float) -> bool:
        if now - endpoint.metrics.scraped_at <= self.stale_after:
            return True
        self.on_stale(endpoint)
        return False


#: Score given to an endpoint whose scraped metrics are stale: neither preferred nor avoided.
NEUTRAL = 0.5
