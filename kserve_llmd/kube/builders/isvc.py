"""KServe ``InferenceService`` (v1beta1) objects for a P/D deployment behind our router.

* ``<name>-prefill``: predictor only, runtime ``llmd-<backend>-prefill``, pods labelled ``llm-d.ai/role: prefill``
  (rendered only when the prefill pool has replicas);
* ``<name>``: the decode predictor (``role: decode``, or ``both`` when there is no prefill pool) and, as its
  transformer, our router discovering both pools by the ``llm-d.ai/model`` label through the Kubernetes API
  (service account + pod-reader Role from ``rbac.py``).

Both use ``RawDeployment`` mode: Knative allows one container port, and the engines expose four.
"""

from __future__ import annotations

from kserve_llmd.kube.builders.core import (
    ENGINE_LABEL,
    MODEL_LABEL,
    PART_OF,
    PART_OF_LABEL,
    ROLE_LABEL,
    EnvVar,
    ObjectMeta,
    gpu_resources,
    manifest,
)
from kserve_llmd.kube.builders.rbac import discovery_rbac
from kserve_llmd.kube.builders.router import RouterOptions, router_container, termination_grace
from kserve_llmd.kube.builders.runtime import HTTP_PORT, MODEL_FORMAT, kv_events_config, runtime_name
from kserve_llmd.kube.builders.spec import LLMServiceSpec, PoolOptions
from kserve_llmd.types import JSON, Role

ISVC_API = "serving.kserve.io/v1beta1"
ANNOTATIONS = {"serving.kserve.io/deploymentMode": "RawDeployment"}


def engine_labels(spec: LLMServiceSpec, role: Role) -> dict[str, str]:
    return {ROLE_LABEL: role, ENGINE_LABEL: "vllm", MODEL_LABEL: spec.name, PART_OF_LABEL: PART_OF}


def model_args(spec: LLMServiceSpec, pool: PoolOptions) -> list[str]:
    """Appended to the runtime's arguments: one served model name (and KV-event topic) for both pools."""
    if spec.backend == "sim":
        args = ["--model", spec.model, "--kv-events-topic", f"kv@$(POD_IP):{HTTP_PORT}@{spec.model}"]
    else:
        args = ["--served-model-name", spec.model, "--kv-events-config", kv_events_config(spec.model)]
        if pool.gpus > 1:
            args += ["--tensor-parallel-size", str(pool.gpus)]
    return [*args, *pool.extra_args]


def predictor(spec: LLMServiceSpec, pool: PoolOptions, role: Role) -> JSON:
    gpus = pool.gpus if spec.backend == "vllm" else 0
    model: JSON = {
        "modelFormat": {"name": MODEL_FORMAT},
        "runtime": runtime_name(spec.backend, role),
        "storageUri": spec.model_uri,
        "args": model_args(spec, pool),
        "resources": gpu_resources(gpus, cpu=pool.cpu, memory=pool.memory).to_dict(),
    }
    if spec.image:
        model["image"] = spec.image
    if pool.env:
        model["env"] = [EnvVar(name=k, value=v).to_dict() for k, v in sorted(pool.env.items())]
    return {"minReplicas": pool.replicas, "maxReplicas": pool.replicas, "labels": engine_labels(spec, role),
            "model": model}


def router_options(spec: LLMServiceSpec) -> RouterOptions:
    return RouterOptions(name=f"{spec.name}-router", image=spec.router_image, preset=spec.preset,
                         selector={MODEL_LABEL: spec.name, ENGINE_LABEL: "vllm"},
                         service_account=f"{spec.name}-router", settings=spec.router_settings)


def transformer(spec: LLMServiceSpec) -> JSON:
    options = router_options(spec)
    return {
        "minReplicas": 1,
        "maxReplicas": 1,
        "serviceAccountName": options.service_account,
        "terminationGracePeriodSeconds": termination_grace(options),
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [router_container(options, transformer=True).to_dict()],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }


def inference_services(spec: LLMServiceSpec) -> list[JSON]:
    """The InferenceServices of ``spec`` (prefill first, when present), then the router's RBAC objects."""
    out: list[JSON] = []
    labels = {MODEL_LABEL: spec.name, PART_OF_LABEL: PART_OF}
    if spec.disaggregated:
        meta = ObjectMeta(name=f"{spec.name}-prefill", namespace=spec.namespace, labels=labels,
                          annotations=ANNOTATIONS)
        out.append(manifest(ISVC_API, "InferenceService", meta,
                            spec={"predictor": predictor(spec, spec.prefill, "prefill")}))
    decode_role: Role = "decode" if spec.disaggregated else "both"
    meta = ObjectMeta(name=spec.name, namespace=spec.namespace, labels=labels, annotations=ANNOTATIONS)
    body = {"predictor": predictor(spec, spec.decode, decode_role), "transformer": transformer(spec)}
    out.append(manifest(ISVC_API, "InferenceService", meta, spec=body))
    out.extend(discovery_rbac(router_options(spec).service_account, spec.namespace))
    return out
