"""Gateway API Inference Extension ``InferencePool`` (``inference.networking.k8s.io/v1``).

A pool selects model-server pods by label (same namespace only), lists their target ports (1..8, unique) and names
the endpoint picker Service a gateway consults over ext_proc (REFERENCE 4).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from kserve_llmd.kube.builders.core import DnsName, KubeModel, ObjectMeta, Port, manifest
from kserve_llmd.types import JSON

POOL_API = "inference.networking.k8s.io/v1"


class PortNumber(KubeModel):
    number: Port


class LabelSelector(KubeModel):
    match_labels: dict[str, str] = Field(min_length=1)


class EndpointPickerRef(KubeModel):
    name: str = Field(min_length=1, max_length=253)
    kind: Literal["Service"] = "Service"
    port: PortNumber
    failure_mode: Literal["FailOpen", "FailClose"] = "FailClose"


class InferencePoolSpec(KubeModel):
    selector: LabelSelector
    target_ports: list[PortNumber] = Field(min_length=1, max_length=8)
    endpoint_picker_ref: EndpointPickerRef
    app_protocol: Literal["http", "kubernetes.io/h2c"] | None = None

    @field_validator("target_ports")
    @classmethod
    def _unique(cls, ports: list[PortNumber]) -> list[PortNumber]:
        numbers = [p.number for p in ports]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"port numbers must be unique, got {numbers}")
        return ports


def inference_pool(name: DnsName, namespace: str | None, spec: InferencePoolSpec,
                   labels: dict[str, str] | None = None) -> JSON:
    return manifest(POOL_API, "InferencePool", ObjectMeta(name=name, namespace=namespace, labels=labels),
                    spec=spec.to_dict())


def pool_for(name: DnsName, namespace: str | None, match_labels: dict[str, str], *, target_port: int,
             picker_service: str, picker_port: int = 9002,
             failure_mode: Literal["FailOpen", "FailClose"] = "FailOpen") -> JSON:
    """The common case: one target port, the picker a Service in the same namespace."""
    spec = InferencePoolSpec(
        selector=LabelSelector(match_labels=match_labels),
        target_ports=[PortNumber(number=target_port)],
        endpoint_picker_ref=EndpointPickerRef(name=picker_service, port=PortNumber(number=picker_port),
                                              failure_mode=failure_mode),
    )
    return inference_pool(name, namespace, spec)
