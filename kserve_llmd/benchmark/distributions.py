"""Token-length distributions for workloads: a fixed int, or a seeded draw (inference-perf's shapes).

In YAML a length is either an integer or a mapping::

    question_len: 1200                                      # fixed
    question_len: {dist: normal, mean: 1200, std: 100, min: 800, max: 1600}
    question_len: {dist: uniform, min: 100, max: 300}
    question_len: {dist: lognormal, mean: 1200, std: 400, min: 1, max: 8000}   # mean/std of the draw itself

Every draw is clamped to ``[min, max]`` and rounded to an int of at least 1.
"""

from __future__ import annotations

import math
import random
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Distribution(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dist: Literal["normal", "uniform", "lognormal"]
    mean: float | None = None
    std: float = Field(default=0.0, ge=0)
    min: int = Field(default=1, ge=1)
    max: int = Field(default=1_000_000, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Distribution:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is over max ({self.max})")
        if self.dist in ("normal", "lognormal") and self.mean is None:
            raise ValueError(f"a {self.dist} distribution needs a mean")
        return self

    def sample(self, rng: random.Random) -> int:
        if self.dist == "uniform":
            return rng.randint(self.min, self.max)
        assert self.mean is not None
        if self.dist == "normal":
            value = rng.gauss(self.mean, self.std)
        else:
            # Parameters of the underlying normal so that the draw itself has the given mean and std.
            sigma2 = math.log(1.0 + (self.std / self.mean) ** 2)
            value = rng.lognormvariate(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2))
        return max(self.min, min(self.max, max(1, round(value))))


Length = Annotated[int, Field(ge=1)] | Distribution


def sample_length(length: Length, rng: random.Random) -> int:
    """A fixed length, or one draw from its distribution."""
    return length if isinstance(length, int) else length.sample(rng)


def mean_length(length: Length) -> float:
    """The expected value (used to size QPS ladders; clamping is ignored)."""
    if isinstance(length, int):
        return float(length)
    if length.dist == "uniform":
        return (length.min + length.max) / 2
    assert length.mean is not None
    return length.mean
