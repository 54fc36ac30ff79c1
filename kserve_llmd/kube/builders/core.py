"""Typed Kubernetes building blocks shared by every builder: pydantic models whose aliases are the API's camelCase.

Each model forbids unknown fields, accepts either spelling (``container_port`` or ``containerPort``), and turns into
the plain dict the API server expects with :meth:`KubeModel.to_dict` (``None`` fields dropped). Only the fields this
project renders are modelled; every rendered object is still validated against the real schemas (``kube/crds.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from kserve_llmd.types import JSON

#: Label keys llm-d and our router use to find engines and their roles.
ROLE_LABEL = "llm-d.ai/role"
ENGINE_LABEL = "llm-d.ai/engine-type"
MODEL_LABEL = "llm-d.ai/model"
PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF = "kserve-llmd"

#: A DNS-1035 label: what KServe accepts as an InferenceService name and what Services need.
DnsName = Annotated[str, StringConstraints(pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
#: A DNS-1123 label (namespaces, container and volume names).
DnsLabel = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
#: A Kubernetes quantity as a string (``"1"``, ``"16Gi"``, ``"500m"``).
Quantity = Annotated[str, StringConstraints(pattern=r"^[+-]?[0-9.]+([eE][+-]?[0-9]+|[KMGTPE]i?|m|k|u|n)?$")]
Port = Annotated[int, Field(ge=1, le=65535)]


def _iana_service_name(name: str) -> str:
    if "--" in name or not any(c.isalpha() for c in name):
        raise ValueError(f"{name!r} is not an IANA_SVC_NAME (needs a letter, no '--')")
    return name


#: A container port name (IANA_SVC_NAME): at most 15 of ``a-z0-9-``, a letter, no leading, trailing or double ``-``.
PortName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=15),
                     AfterValidator(_iana_service_name)]


class KubeModel(BaseModel):
    """Base of every typed manifest piece: camelCase aliases, strict about unknown fields, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    def to_dict(self) -> JSON:
        """The API-server form: camelCase keys, ``None`` dropped."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ObjectMeta(KubeModel):
    name: str
    namespace: DnsLabel | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class ObjectFieldSelector(KubeModel):
    field_path: str


class EnvVarSource(KubeModel):
    field_ref: ObjectFieldSelector


class EnvVar(KubeModel):
    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None

    @classmethod
    def field(cls, name: str, path: str) -> EnvVar:
        """An env var filled by the downward API (``status.podIP``, ``metadata.namespace``, ...)."""
        return cls(name=name, value_from=EnvVarSource(field_ref=ObjectFieldSelector(field_path=path)))


class ContainerPort(KubeModel):
    container_port: Port
    name: PortName | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


class ResourceRequirements(KubeModel):
    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None


class HTTPGetAction(KubeModel):
    path: str
    port: Port | str


class Probe(KubeModel):
    http_get: HTTPGetAction
    initial_delay_seconds: int | None = Field(default=None, ge=0)
    period_seconds: int | None = Field(default=None, ge=1)
    timeout_seconds: int | None = Field(default=None, ge=1)
    failure_threshold: int | None = Field(default=None, ge=1)

    @classmethod
    def http(
        cls, path: str, port: int | str, *, period: int = 10, failures: int = 3, delay: int | None = None
    ) -> Probe:
        return cls(http_get=HTTPGetAction(path=path, port=port), period_seconds=period, failure_threshold=failures,
                   initial_delay_seconds=delay)


class VolumeMount(KubeModel):
    name: DnsLabel
    mount_path: str
    read_only: bool | None = None


class Capabilities(KubeModel):
    drop: list[str] | None = None


class SecurityContext(KubeModel):
    run_as_non_root: bool | None = None
    read_only_root_filesystem: bool | None = None
    allow_privilege_escalation: bool | None = None
    capabilities: Capabilities | None = None

    @classmethod
    def restricted(cls) -> SecurityContext:
        """Pod Security Standards "restricted" for a container: non-root, read-only root, no capabilities."""
        return cls(run_as_non_root=True, read_only_root_filesystem=True, allow_privilege_escalation=False,
                   capabilities=Capabilities(drop=["ALL"]))


class Container(KubeModel):
    name: DnsLabel
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVar] | None = None
    ports: list[ContainerPort] | None = None
    resources: ResourceRequirements | None = None
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None
    volume_mounts: list[VolumeMount] | None = None
    security_context: SecurityContext | None = None


class EmptyDirVolumeSource(KubeModel):
    medium: Literal["", "Memory"] | None = None
    size_limit: Quantity | None = None


class Volume(KubeModel):
    name: DnsLabel
    empty_dir: EmptyDirVolumeSource | None = None


def manifest(api_version: str, kind: str, meta: ObjectMeta, **body: Any) -> JSON:
    """A top-level object: ``apiVersion``, ``kind``, ``metadata`` then the given fields (already plain dicts)."""
    return {"apiVersion": api_version, "kind": kind, "metadata": meta.to_dict(), **body}


def gpu_resources(gpus: int, *, cpu: str, memory: str) -> ResourceRequirements:
    """Requests and limits for an engine pod: ``nvidia.com/gpu`` only when ``gpus`` > 0."""
    requests: dict[str, str] = {"cpu": cpu, "memory": memory}
    limits: dict[str, str] = {"memory": memory}
    if gpus > 0:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
    return ResourceRequirements(requests=requests, limits=limits)
