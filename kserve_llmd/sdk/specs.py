"""The small typed inputs of the SDK: ``PoolSpec`` (one engine pool) and ``RouterSpec`` (the scheduler), and the
``Deployment`` Protocol that ``LLMDeployment`` (cluster) and ``LocalDeployment`` (local processes) both satisfy."""

from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from kserve_llmd.types import JSON


class PoolSpec(BaseModel):
    """One engine pool. ``replicas`` = pods on a cluster, engines locally; 0 prefill replicas = no P/D split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replicas: int = Field(default=1, ge=0, le=1000)
    gpus: int = Field(default=1, ge=0, le=64, description="per pod (cluster only); >1 sets tensor parallelism")
    cpu: str = "4"
    memory: str = "16Gi"
    env: dict[str, str] = Field(default_factory=dict)
    extra_args: list[str] = Field(default_factory=list, description="appended to the engine's arguments")


class RouterSpec(BaseModel):
    """The router's scheduling: a preset (``round-robin``, ``least-load``, ``approx-prefix``, ``precise-prefix``,
    ``pd-decider``; None = ``pd-decider`` with a prefill pool, else ``precise-prefix``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str | None = None
    non_cached_tokens: int = Field(default=0, ge=0, description="P/D: disaggregate only above this many uncached "
                                                                "prompt tokens (0 = always)")
    scheduler_config_ref: str | None = Field(default=None, description="llmisvc: a ConfigMap holding the "
                                                                       "EndpointPickerConfig")
    settings: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="isvc: the router's settings, SECTION.FIELD → value (its --set), e.g. "
                                          "{'timeouts.first_byte': 1200}")


@runtime_checkable
class Deployment(Protocol):
    """What notebooks and Kubeflow Pipelines components drive: render → apply → wait_ready → endpoint → delete."""

    def render(self) -> list[JSON]: ...

    def apply(self) -> None: ...

    def wait_ready(self, timeout: float = 600.0) -> str: ...

    @property
    def endpoint(self) -> str: ...

    def delete(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


def default_name(model: str) -> str:
    """A DNS-1035 name from a model id: ``Qwen/Qwen3-0.6B`` → ``qwen3-0-6b``."""
    base = model.rsplit("/", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9]+", "-", base).strip("-")
    if not name or not name[0].isalpha():
        name = f"m-{name}".rstrip("-")
    return name[:40].rstrip("-")
