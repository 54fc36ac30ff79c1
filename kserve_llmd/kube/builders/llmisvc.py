"""KServe ``LLMInferenceService`` (``serving.kserve.io/v1alpha2``): the llm-d path KServe itself manages.

``spec.model{uri,name}``, ``spec.replicas`` and ``spec.template`` describe the decode pool; ``spec.prefill`` is the
prefill pool's own workload (only when it has replicas); ``spec.router`` asks KServe for a managed route, gateway
and scheduler whose ``EndpointPickerConfig`` we pass inline (``scheduler.config.inline``, an object: the CRD keeps
unknown fields there) or by ConfigMap reference (``scheduler.config.ref{name,key}``). KServe's own presets
(``LLMInferenceServiceConfig``) fill in the vLLM container; we set resources, parallelism and, for the simulator
backend, the image and command.
"""

from __future__ import annotations

from typing import Any

from kserve_llmd.kube.builders.core import (
    ENGINE_LABEL,
    MODEL_LABEL,
    PART_OF,
    PART_OF_LABEL,
    EnvVar,
    ObjectMeta,
    gpu_resources,
    manifest,
)
from kserve_llmd.kube.builders.epp import aggregated_config, pd_config
from kserve_llmd.kube.builders.runtime import KSERVE_LLMD_IMAGE, engine_ports, sim_args
from kserve_llmd.kube.builders.spec import LLMServiceSpec, PoolOptions
from kserve_llmd.types import JSON, Role

LLMISVC_API = "serving.kserve.io/v1alpha2"
SCHEDULER_CONFIG_KEY = "config.yaml"


def scheduler_config(spec: LLMServiceSpec) -> JSON:
    """The EndpointPickerConfig as a plain dict (the router's preset equivalent)."""
    if spec.disaggregated:
        config = pd_config(api_version=spec.epp_api_version, non_cached_tokens=spec.non_cached_tokens)
    else:
        config = aggregated_config(api_version=spec.epp_api_version)
    return config.to_dict()


def _template(spec: LLMServiceSpec, pool: PoolOptions, role: Role) -> JSON:
    container: dict[str, Any] = {"name": "main"}
    if spec.backend == "sim":
        container.update(image=spec.image or KSERVE_LLMD_IMAGE, command=["kserve-llmd", "sim"],
                         args=[*sim_args(role, "tiny"), *pool.extra_args])
        container["args"] = [a.replace("{{.Name}}", spec.model) for a in container["args"]]
        container["env"] = [EnvVar.field("POD_IP", "status.podIP").to_dict()]
        container["ports"] = [port.to_dict() for port in engine_ports()]
    else:
        if spec.image:
            container["image"] = spec.image
        if pool.extra_args:
            container["args"] = list(pool.extra_args)
    if pool.env:
        container.setdefault("env", []).extend(EnvVar(name=k, value=v).to_dict() for k, v in sorted(pool.env.items()))
    gpus = pool.gpus if spec.backend == "vllm" else 0
    container["resources"] = gpu_resources(gpus, cpu=pool.cpu, memory=pool.memory).to_dict()
    return {"containers": [container]}


def _workload(spec: LLMServiceSpec, pool: PoolOptions, role: Role) -> JSON:
    out: JSON = {"replicas": pool.replicas, "template": _template(spec, pool, role)}
    if spec.backend == "vllm" and pool.gpus > 1:
        out["parallelism"] = {"tensor": pool.gpus}
    return out


def llm_inference_service(spec: LLMServiceSpec) -> JSON:
    """One LLMInferenceService for ``spec`` (prefill pool included when it has replicas)."""
    labels = {MODEL_LABEL: spec.name, PART_OF_LABEL: PART_OF}
    body: JSON = {"model": {"uri": spec.model_uri, "name": spec.model}}
    body.update(_workload(spec, spec.decode, "decode" if spec.disaggregated else "both"))
    body["labels"] = {ENGINE_LABEL: "vllm", **labels}
    if spec.disaggregated:
        body["prefill"] = _workload(spec, spec.prefill, "prefill")
    if spec.scheduler_config_ref:
        config: JSON = {"ref": {"name": spec.scheduler_config_ref, "key": SCHEDULER_CONFIG_KEY}}
    else:
        config = {"inline": scheduler_config(spec)}
    body["router"] = {"route": {}, "gateway": {}, "scheduler": {"config": config}}
    meta = ObjectMeta(name=spec.name, namespace=spec.namespace, labels=labels)
    return manifest(LLMISVC_API, "LLMInferenceService", meta, spec=body)


def scheduler_config_map(spec: LLMServiceSpec) -> JSON:
    """The ConfigMap ``scheduler_config_ref`` points at (render it alongside when using a reference)."""
    import yaml

    name = spec.scheduler_config_ref or f"{spec.name}-scheduler-config"
    data = {SCHEDULER_CONFIG_KEY: yaml.safe_dump(scheduler_config(spec), sort_keys=False)}
    return manifest("v1", "ConfigMap", ObjectMeta(name=name, namespace=spec.namespace,
                                                  labels={PART_OF_LABEL: PART_OF}), data=data)
