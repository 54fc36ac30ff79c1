"""Typed manifest builders: pydantic specs in, plain dicts out (validate them with ``kserve_llmd.kube.crds``).

| module | builds |
| --- | --- |
| ``core.py`` | the shared Kubernetes pieces (Container, EnvVar, Probe, ...) and label names |
| ``spec.py`` | ``LLMServiceSpec`` / ``PoolOptions``: the one input every renderer reads |
| ``runtime.py`` | ServingRuntime / ClusterServingRuntime for vLLM (prefill, decode, aggregated) and the simulator |
| ``isvc.py`` | the P/D InferenceServices, our router as the transformer |
| ``llmisvc.py`` | the LLMInferenceService alternative (KServe's managed llm-d scheduler) |
| ``epp.py`` | the ``EndpointPickerConfig`` (plugins + scheduling profiles) |
| ``pool.py`` | Gateway API Inference Extension ``InferencePool`` |
| ``rbac.py`` | ServiceAccount + pod-reader Role + RoleBinding for discovery |
| ``router.py`` | the standalone router Deployment + Service, and the transformer container |
"""

from kserve_llmd.kube.builders.epp import EndpointPickerConfig, aggregated_config, pd_config
from kserve_llmd.kube.builders.isvc import inference_services
from kserve_llmd.kube.builders.llmisvc import llm_inference_service, scheduler_config, scheduler_config_map
from kserve_llmd.kube.builders.pool import InferencePoolSpec, inference_pool, pool_for
from kserve_llmd.kube.builders.rbac import discovery_rbac
from kserve_llmd.kube.builders.router import RouterOptions, router_deployment
from kserve_llmd.kube.builders.runtime import RuntimeOptions, runtime_name, serving_runtime
from kserve_llmd.kube.builders.spec import LLMServiceSpec, PoolOptions, parse_spec

__all__ = [
    "EndpointPickerConfig",
    "InferencePoolSpec",
    "LLMServiceSpec",
    "PoolOptions",
    "RouterOptions",
    "RuntimeOptions",
    "aggregated_config",
    "discovery_rbac",
    "inference_pool",
    "inference_services",
    "llm_inference_service",
    "parse_spec",
    "pd_config",
    "pool_for",
    "router_deployment",
    "runtime_name",
    "scheduler_config",
    "scheduler_config_map",
    "serving_runtime",
]
