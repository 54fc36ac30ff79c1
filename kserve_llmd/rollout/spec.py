"""``DeploySpec``: what ``deploy`` (and the canary's candidate) asks for, validated once at the step's entry."""

from __future__ import annotations

import shlex
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kserve_llmd.errors import ConfigError
from kserve_llmd.rollout.state import Target


class DeploySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    target: Target = "local"
    model: str = Field("sim-model", min_length=1)
    #: Simulator profile (local) — see ``kserve_llmd.simulator.profiles``.
    profile: str = "tiny"
    #: Extra simulator flags, e.g. ``--prefill-time-per-token 0.05`` for a deliberately slow candidate.
    sim_args: tuple[str, ...] = ()
    engines: int = Field(1, ge=1, le=64)
    router_preset: str = "round-robin"
    time_scale: float = Field(1.0, ge=0)
    ready_timeout_s: float = Field(120.0, gt=0)
    namespace: str = "default"  # cluster
    #: Cluster: where the weights are (default ``hf://<model>``), the engines (``sim``: the simulator image, with
    #: ``profile``, ``time_scale`` and ``sim_args``; ``vllm``) and the KServe resource (``isvc``: our router as the
    #: transformer; ``llmisvc``: an LLMInferenceService with KServe's scheduler).
    model_uri: str = ""
    backend: Literal["sim", "vllm"] = "sim"
    format: Literal["isvc", "llmisvc"] = "isvc"
    #: Local: where logs and ready files go (one sub-folder per deployment).
    workdir: str = ""
    seed: int = 0
    role: Literal["aggregated"] = "aggregated"

    @field_validator("sim_args", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return tuple(shlex.split(value)) if isinstance(value, str) else value

    @classmethod
    def parse(cls, **fields: object) -> DeploySpec:
        """Build from step parameters; errors become one ``ConfigError`` that names the parameter."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(root)"
            raise ConfigError(f"{where}: {first['msg']} (got {first.get('input')!r})", param=where) from None
