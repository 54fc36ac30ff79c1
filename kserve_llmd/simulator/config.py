"""``SimConfig``: the simulator's whole configuration, parsed strictly once at the entry point and passed down.

Ports: engine ``i`` listens on ``port + i`` (``port == 0``: every engine takes an ephemeral port) and publishes KV
events on the port of ``zmq_endpoint`` plus ``i`` (port ``0`` or ``*``: ephemeral). Its replay ROUTER socket binds
the port of ``replay_endpoint`` plus ``i`` the same way (vLLM's ``replay_endpoint``); without one it takes an
ephemeral port on ``zmq_endpoint``'s host. Both real addresses are reported in ``EngineInfo``.

Timing: ``profile`` names a ``TimingParams`` in ``profiles.py``; ``timing`` (when given) replaces it entirely. The
CLI builds ``timing`` from the profile plus the llm-d-inference-sim-named overrides. Every simulated duration is
multiplied by ``time_scale`` (0: never wait). Leases are the exception at ``time_scale == 0``: they then last their
unscaled length, so P/D still works when nothing else waits.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kserve_llmd.simulator.profiles import PROFILES, TimingParams, get_profile
from kserve_llmd.types import Role

FailureType = Literal["rate_limit", "invalid_api_key", "context_length", "server_error", "model_not_found",
                      "invalid_request"]
FAILURE_TYPES: tuple[FailureType, ...] = ("rate_limit", "invalid_api_key", "context_length", "server_error",
                                          "model_not_found", "invalid_request")


class SimConfig(BaseModel):
    """Configuration of a ``SimCluster`` (all engines alike except their ports and per-engine seeds)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    engines: int = Field(default=1, ge=1, le=256)
    model: str = Field(default="sim-model", min_length=1)
    role: Role = "both"
    block_size: int = Field(default=16, ge=1, le=4096)
    kv_cache_size: int = Field(default=1024, ge=1, description="KV-cache capacity in blocks (vLLM's num_gpu_blocks)")
    max_num_seqs: int = Field(default=256, ge=1)
    max_num_batched_tokens: int = Field(default=8192, ge=1)
    max_model_len: int = Field(default=16384, ge=2)
    enable_prefix_caching: bool = True
    zmq_endpoint: str = "tcp://127.0.0.1:*"
    replay_endpoint: str | None = Field(default=None, description="None: ephemeral, on zmq_endpoint's host")
    replay_buffer_steps: int = Field(default=10000, ge=1)
    kv_events_topic: str = "kv@{host}:{port}@{model}"
    event_encoding: Literal["map", "positional"] = "map"
    time_scale: float = Field(default=1.0, ge=0)
    profile: str = "tiny"
    timing: TimingParams | None = None
    seed: int = 0
    tokenizer: str | None = None
    failure_injection_rate: float = Field(default=0.0, ge=0, le=1)
    failure_types: tuple[FailureType, ...] = FAILURE_TYPES
    kv_lease_seconds: float = Field(default=30.0, ge=0, description="P/D prefill lease")
    kv_load_failure_policy: Literal["fail", "recompute"] = "fail"
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    default_max_tokens: int | None = Field(default=None, ge=1, description="None: vLLM's max_model_len - prompt")

    @model_validator(mode="after")
    def _check(self) -> SimConfig:
        if self.timing is None and self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; known: {', '.join(sorted(PROFILES))}")
        for name in ("zmq_endpoint", "replay_endpoint"):
            value = getattr(self, name)
            if value is not None and (not value.startswith("tcp://") or ":" not in value[6:]):
                raise ValueError(f"{name} must look like tcp://HOST:PORT, got {value!r}")
        if self.port and self.port + self.engines - 1 > 65535:
            raise ValueError("port + engines - 1 must be at most 65535")
        if not self.failure_types:
            raise ValueError("failure_types must name at least one failure type")
        return self

    def resolved_timing(self) -> TimingParams:
        return self.timing if self.timing is not None else get_profile(self.profile)

    def zmq_bind(self, index: int) -> str:
        """The PUB endpoint engine ``index`` binds: base port + index, or ephemeral (``*``) when the base is 0/*."""
        return _numbered(self.zmq_endpoint, index)

    def replay_bind(self, index: int) -> str:
        """The replay ROUTER endpoint engine ``index`` binds: numbered as ``zmq_bind``, or ephemeral when not set."""
        if self.replay_endpoint is None:
            return f"{self.zmq_endpoint.rpartition(':')[0]}:*"
        return _numbered(self.replay_endpoint, index)

    def lease_wall_seconds(self) -> float:
        """Wall-clock lease: scaled like every duration, except at time-scale 0 (then unscaled, see module doc)."""
        return self.kv_lease_seconds * self.time_scale if self.time_scale > 0 else self.kv_lease_seconds


def _numbered(endpoint: str, index: int) -> str:
    base, _, port = endpoint.rpartition(":")
    if port in ("*", "0"):
        return f"{base}:*"
    return f"{base}:{int(port) + index}"
