"""KServe ``ServingRuntime`` / ``ClusterServingRuntime`` for vLLM prefill, decode and aggregated pools, and the
CPU variant running our simulator.

A runtime pins everything an engine needs for llm-d-style serving (REFERENCE 1.1, 1.4):

* ``--kv-transfer-config`` with the NixlConnector and the pool's role (``kv_producer`` on prefill, ``kv_consumer``
  on decode, ``kv_both`` aggregated), ``VLLM_NIXL_SIDE_CHANNEL_HOST=$(POD_IP)``, ``..._PORT=5600``;
* ``--kv-events-config`` publishing KV events on ``tcp://*:5557`` with topic ``kv@$(POD_IP):8080@<model>``, and
  their replay ROUTER on ``tcp://*:5558`` (``replay_endpoint``: the router fills gaps and catches up on join from it);
* ``POD_IP`` from the downward API (Kubernetes expands ``$(POD_IP)`` in args and env);
* ports 8080 (OpenAI HTTP), 5557 (KV events), 5558 (KV-event replay), 5600 (NIXL side channel); probes on
  ``/health``;
* a memory-backed ``/dev/shm`` (NCCL and vLLM workers need more than the default 64 MiB);
* Prometheus scrape annotations, ``supportedModelFormats`` (``autoSelect: false``: chosen by name only) and
  ``protocolVersions``.

``{{.Name}}`` is KServe's placeholder for the InferenceService name. Both pools of one model must serve the same
model name, so the InferenceService builder appends ``--served-model-name <model>`` (the last flag wins in vLLM).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from kserve_llmd.kube.builders.core import (
    ENGINE_LABEL,
    PART_OF,
    PART_OF_LABEL,
    ROLE_LABEL,
    Container,
    ContainerPort,
    DnsName,
    EmptyDirVolumeSource,
    EnvVar,
    KubeModel,
    ObjectMeta,
    Probe,
    Volume,
    VolumeMount,
    gpu_resources,
    manifest,
)
from kserve_llmd.types import JSON, Role

SERVING_API = "serving.kserve.io/v1alpha1"
VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"
#: Our own image (router, simulator, KFP components): ``kserve-llmd`` is its entry point.
KSERVE_LLMD_IMAGE = "ghcr.io/kserve-llmd/kserve-llmd:0.1.0"
HTTP_PORT = 8080
KV_EVENTS_PORT = 5557
KV_REPLAY_PORT = 5558
NIXL_PORT = 5600
MODEL_DIR = "/mnt/models"
MODEL_FORMAT = "huggingface"
KV_ROLES: dict[Role, str] = {"prefill": "kv_producer", "decode": "kv_consumer", "both": "kv_both"}
ROLE_SUFFIX: dict[Role, str] = {"prefill": "prefill", "decode": "decode", "both": "aggregated"}

Backend = Literal["vllm", "sim"]


class RuntimeOptions(KubeModel):
    """What varies between the runtimes we ship; everything else is fixed by the llm-d conventions above."""

    role: Role
    backend: Backend = "vllm"
    name: DnsName | None = Field(default=None, description="default: llmd-<backend>-<prefill|decode|aggregated>")
    image: str | None = Field(default=None, description="default: vllm/vllm-openai (vllm) or our image (sim)")
    gpus: int = Field(default=1, ge=0, description="nvidia.com/gpu per pod (vllm backend only)")
    cpu: str = "4"
    memory: str = "16Gi"
    shm_size: str = "2Gi"
    sim_profile: str = "tiny"

    @property
    def runtime_name(self) -> str:
        return self.name or runtime_name(self.backend, self.role)


def runtime_name(backend: Backend, role: Role) -> str:
    """The name we give the runtime for a backend and pool role, e.g. ``llmd-vllm-prefill``."""
    return f"llmd-{backend}-{ROLE_SUFFIX[role]}"


def kv_transfer_config(role: Role) -> str:
    return json.dumps({"kv_connector": "NixlConnector", "kv_role": KV_ROLES[role]}, separators=(",", ":"))


def kv_events_config(model: str = "{{.Name}}", port: int = HTTP_PORT) -> str:
    config = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": f"tcp://*:{KV_EVENTS_PORT}",
              "replay_endpoint": f"tcp://*:{KV_REPLAY_PORT}", "topic": f"kv@$(POD_IP):{port}@{model}"}
    return json.dumps(config, separators=(",", ":"))


def vllm_args(role: Role) -> list[str]:
    return [
        "--model", MODEL_DIR,
        "--port", str(HTTP_PORT),
        "--served-model-name", "{{.Name}}",
        "--enable-prefix-caching",
        "--kv-transfer-config", kv_transfer_config(role),
        "--kv-events-config", kv_events_config(),
    ]  # fmt: skip


def sim_args(role: Role, profile: str) -> list[str]:
    return [
        "--host", "0.0.0.0",
        "--port", str(HTTP_PORT),
        "--model", "{{.Name}}",
        "--role", role,
        "--profile", profile,
        "--zmq-endpoint", f"tcp://*:{KV_EVENTS_PORT}",
        "--replay-endpoint", f"tcp://*:{KV_REPLAY_PORT}",
        "--kv-events-topic", f"kv@$(POD_IP):{HTTP_PORT}@{{{{.Name}}}}",
    ]  # fmt: skip


def engine_ports() -> list[ContainerPort]:
    """What an engine container listens on: OpenAI HTTP, KV-event publisher, KV-event replay (vLLM adds NIXL's)."""
    return [ContainerPort(container_port=HTTP_PORT, name="http"),
            ContainerPort(container_port=KV_EVENTS_PORT, name="kv-events"),
            ContainerPort(container_port=KV_REPLAY_PORT, name="kv-replay")]


def engine_container(options: RuntimeOptions) -> Container:
    """The ``kserve-container`` of a runtime (KServe merges the InferenceService's model container into it)."""
    env = [EnvVar.field("POD_IP", "status.podIP")]
    ports = engine_ports()
    if options.backend == "vllm":
        env += [EnvVar(name="VLLM_NIXL_SIDE_CHANNEL_HOST", value="$(POD_IP)"),
                EnvVar(name="VLLM_NIXL_SIDE_CHANNEL_PORT", value=str(NIXL_PORT))]
        ports.append(ContainerPort(container_port=NIXL_PORT, name="nixl"))
        image, command, args = options.image or VLLM_IMAGE, None, vllm_args(options.role)
        resources = gpu_resources(options.gpus, cpu=options.cpu, memory=options.memory)
        startup = Probe.http("/health", HTTP_PORT, period=10, failures=90)  # model load: up to 15 minutes
    else:
        image, command = options.image or KSERVE_LLMD_IMAGE, ["kserve-llmd", "sim"]
        args = sim_args(options.role, options.sim_profile)
        resources = gpu_resources(0, cpu="500m", memory="512Mi")
        startup = Probe.http("/health", HTTP_PORT, period=2, failures=30)
    return Container(
        name="kserve-container",
        image=image,
        command=command,
        args=args,
        env=env,
        ports=ports,
        resources=resources,
        startup_probe=startup,
        readiness_probe=Probe.http("/health", HTTP_PORT, period=5, failures=3),
        liveness_probe=Probe.http("/health", HTTP_PORT, period=10, failures=6),
        volume_mounts=[VolumeMount(name="dshm", mount_path="/dev/shm")],
    )


def runtime_spec(options: RuntimeOptions) -> JSON:
    """The ``spec`` shared by ServingRuntime and ClusterServingRuntime."""
    shm = Volume(name="dshm", empty_dir=EmptyDirVolumeSource(medium="Memory", size_limit=options.shm_size))
    return {
        "annotations": {"prometheus.kserve.io/port": str(HTTP_PORT), "prometheus.kserve.io/path": "/metrics"},
        "labels": {ROLE_LABEL: options.role, ENGINE_LABEL: "vllm", PART_OF_LABEL: PART_OF},
        "supportedModelFormats": [{"name": MODEL_FORMAT, "version": "1", "autoSelect": False}],
        "protocolVersions": ["v1", "v2"],
        "multiModel": False,
        "containers": [engine_container(options).to_dict()],
        "volumes": [shm.to_dict()],
    }


def serving_runtime(options: RuntimeOptions, *, namespace: str | None = None, cluster: bool = False) -> JSON:
    """A ``ServingRuntime`` (namespaced) or, with ``cluster=True``, a ``ClusterServingRuntime``."""
    labels = {PART_OF_LABEL: PART_OF, ROLE_LABEL: options.role}
    annotations = {"openshift.io/display-name": f"kserve-llmd {options.backend} ({ROLE_SUFFIX[options.role]})"}
    meta = ObjectMeta(name=options.runtime_name, namespace=None if cluster else namespace, labels=labels,
                      annotations=annotations)
    kind = "ClusterServingRuntime" if cluster else "ServingRuntime"
    return manifest(SERVING_API, kind, meta, spec=runtime_spec(options))
