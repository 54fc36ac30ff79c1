"""``LLMServiceSpec``: the one typed description of a deployment that every renderer reads (CLI, SDK, pipelines).

Validation here is about meaning (negative replicas, a name KServe would refuse, a decode pool of zero); the
rendered objects are validated again against the CRD schemas. Errors are pydantic ``ValidationError``s whose
``loc`` names the field; :func:`parse_spec` turns them into one ``ConfigError`` naming each bad field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from kserve_llmd.errors import ConfigError
from kserve_llmd.kube.builders.core import DnsLabel, DnsName, KubeModel
from kserve_llmd.kube.builders.epp import EPP_API_VERSION
from kserve_llmd.kube.builders.router import RouterSettings
from kserve_llmd.kube.builders.runtime import KSERVE_LLMD_IMAGE, Backend

Format = Literal["isvc", "llmisvc"]


class PoolOptions(KubeModel):
    """One engine pool (prefill or decode): size and per-pod resources."""

    replicas: int = Field(ge=0, le=1000)
    gpus: int = Field(default=1, ge=0, le=64, description="nvidia.com/gpu per pod; >1 sets tensor parallelism")
    cpu: str = "4"
    memory: str = "16Gi"
    env: dict[str, str] = Field(default_factory=dict)
    extra_args: list[str] = Field(default_factory=list, description="appended to the engine's arguments")


class LLMServiceSpec(KubeModel):
    """A model served by a prefill pool (optional: 0 replicas = aggregated) and a decode pool, behind our router
    (``isvc``) or KServe's llm-d scheduler (``llmisvc``)."""

    name: DnsName = Field(description="object name prefix; a DNS-1035 label (KServe's rule for service names)")
    model: str = Field(min_length=1, description="served model name, e.g. Qwen/Qwen3-0.6B")
    model_uri: str = Field(pattern=r"^[a-z0-9+.-]+://.+", description="hf://, s3://, gs://, pvc://, oci://")
    namespace: DnsLabel | None = None
    format: Format = "isvc"
    backend: Backend = "vllm"
    prefill: PoolOptions = Field(default_factory=lambda: PoolOptions(replicas=1))
    decode: PoolOptions = Field(default_factory=lambda: PoolOptions(replicas=1))
    image: str | None = Field(default=None, description="engine image (default per backend)")
    router_image: str = KSERVE_LLMD_IMAGE
    router_preset: str | None = Field(default=None, description="default: pd-decider with prefill, else "
                                                                "precise-prefix")
    non_cached_tokens: int = Field(default=0, ge=0, description="P/D decider threshold (0 = always disaggregate)")
    router_settings: RouterSettings = Field(default_factory=dict, description="isvc: the router's settings, "
                                            "SECTION.FIELD → value (its --set), e.g. timeouts.first_byte: 1200")
    epp_api_version: str = EPP_API_VERSION
    scheduler_config_ref: str | None = Field(default=None, description="llmisvc: ConfigMap name holding the "
                                                                       "EndpointPickerConfig under key config.yaml, "
                                                                       "instead of inline")

    @model_validator(mode="after")
    def _check(self) -> LLMServiceSpec:
        if self.decode.replicas < 1:
            raise ValueError("decode.replicas must be at least 1 (prefill-only serves nothing)")
        if self.router_settings and self.format == "llmisvc":
            raise ValueError("router_settings: format llmisvc runs KServe's scheduler, not this router")
        if len(self.name) > 63 - len("-prefill-predictor"):
            raise ValueError(f"name {self.name!r} is too long: derived Service names must stay within 63 characters")
        return self

    @property
    def disaggregated(self) -> bool:
        return self.prefill.replicas > 0

    @property
    def preset(self) -> str:
        return self.router_preset or ("pd-decider" if self.disaggregated else "precise-prefix")


def parse_spec(data: dict[str, Any]) -> LLMServiceSpec:
    """Validate ``data`` into a spec; a ``ConfigError`` names every bad field (``decode.replicas: ...``)."""
    try:
        return LLMServiceSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = ".".join(str(part) for part in error["loc"])
            problems.append(f"{loc}: {error['msg']}" if loc else str(error["msg"]))
        first = ".".join(str(part) for part in exc.errors()[0]["loc"]) or None
        raise ConfigError("invalid deployment spec: " + "; ".join(problems), param=first) from None
