"""Our router as Kubernetes workloads: a standalone Deployment + Service, or the container of an InferenceService
transformer. Both run ``python -m kserve_llmd.transformer``: the router with Kubernetes discovery of engine pods by
label selector (roles from the ``llm-d.ai/role`` label), which also accepts what KServe appends to a transformer's
arguments (``--model_name``, ``--predictor_host``, ``--http_port``; REFERENCE 3).

The entry's flags live in :func:`router_args` only, so a rename there is a one-line change here.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator

from kserve_llmd.kube.builders.core import (
    PART_OF,
    PART_OF_LABEL,
    Container,
    ContainerPort,
    DnsName,
    EnvVar,
    KubeModel,
    ObjectMeta,
    Port,
    Probe,
    ResourceRequirements,
    SecurityContext,
    VolumeMount,
    manifest,
)
from kserve_llmd.kube.builders.runtime import KSERVE_LLMD_IMAGE
from kserve_llmd.types import JSON


def router_settings(value: object) -> object:
    """A settings mapping as the router's ``--set`` takes it: YAML's numbers and booleans as text, every key and value
    checked against the router's own models now (``ConfigError``), so a typo fails at render time, not when the pod
    starts."""
    from kserve_llmd.router.config import check_settings

    if not isinstance(value, dict):
        return value
    text = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
    check_settings(f"{key}={val}" for key, val in text.items())
    return text


#: Router settings (``SECTION.FIELD`` → value), as a field of a builder's options.
RouterSettings = Annotated[dict[str, str], BeforeValidator(router_settings)]

#: What a rendered router runs with unless its settings say otherwise: a drain before it stops, so a Service stops
#: sending to a terminating pod before its listener closes.
DEFAULT_SETTINGS = {"timeouts.drain_delay": "5"}

ROUTER_PORT = 8000
#: The standalone router's admin listener (``/health``, ``/metrics``), where its liveness probe goes: it answers even
#: when client connections are at their cap, so an overload never restarts the pod. (Readiness stays on the client
#: port: an overloaded router should get less traffic.)
ADMIN_PORT = 9090
APP_LABEL = "app.kubernetes.io/name"


class RouterOptions(KubeModel):
    """The router workload: which engines it discovers, which scheduling preset it runs, where it listens."""

    name: DnsName = "kserve-llmd-router"
    image: str = KSERVE_LLMD_IMAGE
    port: Port = ROUTER_PORT
    admin_port: Port = ADMIN_PORT

    @model_validator(mode="after")
    def _ports_apart(self) -> RouterOptions:
        if self.admin_port == self.port:
            raise ValueError(f"admin_port must differ from port ({self.port})")
        return self
    replicas: int = Field(default=1, ge=0)
    selector: dict[str, str] = Field(min_length=1, description="labels of the engine pods to route to")
    preset: str = "precise-prefix"
    service_account: DnsName = "kserve-llmd-router"
    settings: RouterSettings = Field(default_factory=dict, description="router settings, SECTION.FIELD → value "
                                     "(rendered as --set; e.g. limits.max_body_bytes: 33554432)")


def settings_of(options: RouterOptions) -> dict[str, str]:
    return {**DEFAULT_SETTINGS, **options.settings}


def termination_grace(options: RouterOptions) -> int:
    """The pod's ``terminationGracePeriodSeconds``: the router's drain, then its grace for requests in flight, then 5 s
    to exit (Kubernetes' default of 30 s would cut a long stream mid-answer)."""
    from kserve_llmd.router.config import TimeoutsConfig, parse_settings, settings_section

    items = (f"{key}={value}" for key, value in settings_of(options).items())
    timeouts: TimeoutsConfig = settings_section("timeouts", parse_settings(items)["timeouts"])
    return math.ceil(timeouts.drain_delay + timeouts.shutdown_grace) + 5


def router_args(options: RouterOptions, *, port: bool = True) -> list[str]:
    """The entry's arguments. A transformer (``port=False``) gets no ``--port`` (KServe passes ``--http_port``) and no
    admin port (KServe runs its probes)."""
    selector = ",".join(f"{key}={value}" for key, value in sorted(options.selector.items()))
    args = ["--host", "0.0.0.0"]
    if port:
        args += ["--port", str(options.port), "--admin-port", str(options.admin_port)]
    sets = [arg for key, value in sorted(settings_of(options).items()) for arg in ("--set", f"{key}={value}")]
    return [*args, "--discovery", "kubernetes", "--namespace", "$(POD_NAMESPACE)", "--selector", selector,
            "--preset", options.preset, *sets]


def router_container(options: RouterOptions, *, transformer: bool = False) -> Container:
    return Container(
        name="kserve-container" if transformer else "router",
        image=options.image,
        command=["python", "-m", "kserve_llmd.transformer"],
        args=router_args(options, port=not transformer),
        env=[EnvVar.field("POD_NAMESPACE", "metadata.namespace")],
        ports=None if transformer else [ContainerPort(container_port=options.port, name="http"),
                                        ContainerPort(container_port=options.admin_port, name="admin")],
        resources=ResourceRequirements(requests={"cpu": "500m", "memory": "512Mi"}, limits={"memory": "2Gi"}),
        readiness_probe=None if transformer else Probe.http("/health", "http", period=5),
        liveness_probe=None if transformer else Probe.http("/health", "admin", period=10, failures=6),
        volume_mounts=[VolumeMount(name="tmp", mount_path="/tmp")],
        security_context=SecurityContext.restricted(),
    )


def router_deployment(options: RouterOptions, namespace: str | None) -> list[JSON]:
    """``[Deployment, Service]`` for the standalone router."""
    labels = {APP_LABEL: options.name, PART_OF_LABEL: PART_OF}
    pod = {
        "serviceAccountName": options.service_account,
        "terminationGracePeriodSeconds": termination_grace(options),
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [router_container(options).to_dict()],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    deployment = manifest(
        "apps/v1", "Deployment", ObjectMeta(name=options.name, namespace=namespace, labels=labels),
        spec={"replicas": options.replicas, "selector": {"matchLabels": {APP_LABEL: options.name}},
              "template": {"metadata": {"labels": labels}, "spec": pod}},
    )
    service = manifest(
        "v1", "Service", ObjectMeta(name=options.name, namespace=namespace, labels=labels),
        spec={"selector": {APP_LABEL: options.name},
              "ports": [{"name": "http", "port": options.port, "targetPort": "http", "protocol": "TCP"},
                        {"name": "admin", "port": options.admin_port, "targetPort": "admin", "protocol": "TCP"}]},
    )
    return [deployment, service]
