"""The ``cluster`` target: a ``DeploySpec`` as an SDK ``LLMDeployment`` (render → apply → wait_ready → endpoint →
delete through the ``kubernetes`` client), handed between pipeline steps as its ``state()`` (the spec, no
credentials: each step builds its client from ``KubeConfig.detect``, in a KFP pod the service account).

Traffic splits for the canary:

- ``format="isvc"``: our router is the ``<name>`` InferenceService's transformer, so the split is the router's own
  ``PUT /admin/traffic`` at the current version's endpoint (it must be reachable from the step). A version's
  endpoints are its service URL (``status.url``): the candidate's own router schedules its pods.
- ``format="llmisvc"``: KServe's scheduler, not ours, routes; there is no ``/admin/traffic``. KServe's CRD
  (v1alpha2, bundled in ``kube/schemas``) has ``spec.router.route.group`` and ``spec.router.route.weight``
  (0..1000000; ``status.router.group.members[].weight`` reports them), so each version's LLMInferenceService is
  merge-patched into the group named after the current version with its weight; ``None`` removes the current
  version's group. The schema carries no descriptions: this follows the field names, and is checked against the
  schema (the API double validates every patch), NOT against a running KServe controller. Requests pinned with
  ``x-llmd-version`` (the canary benchmark) are a feature of our router only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kserve_llmd.errors import KubeError
from kserve_llmd.kube import ops
from kserve_llmd.kube.builders.llmisvc import LLMISVC_API
from kserve_llmd.kube.resources import resource_for_kind
from kserve_llmd.rollout.backends import put_traffic
from kserve_llmd.rollout.spec import DeploySpec
from kserve_llmd.rollout.state import DeploymentState
from kserve_llmd.router.traffic import TrafficUpdate
from kserve_llmd.sdk import LLMDeployment, PoolSpec, RouterSpec
from kserve_llmd.types import JSON, Clock


class ClusterBackend:
    def __init__(self, *, kube: ops.KubeConfig | None = None, clock: Clock = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, poll: float = 2.0) -> None:
        self._kube, self._clock, self._sleep, self._poll = kube, clock, sleep, poll

    def deployment(self, spec: DeploySpec) -> LLMDeployment:
        """The SDK deployment for ``spec`` (no I/O). The simulator backend gets the local knobs as engine args."""
        args = ["--time-scale", f"{spec.time_scale:g}", "--seed", str(spec.seed), *spec.sim_args]
        decode = PoolSpec(replicas=spec.engines, extra_args=args if spec.backend == "sim" else [])
        return LLMDeployment(
            spec.model, spec.model_uri or f"hf://{spec.model}", name=spec.name, namespace=spec.namespace,
            prefill=PoolSpec(replicas=0), decode=decode, router=RouterSpec(preset=spec.router_preset),
            format=spec.format, backend=spec.backend, kube=self._kube, clock=self._clock, sleep=self._sleep,
            poll=self._poll,
        )  # fmt: skip

    def deploy(self, spec: DeploySpec) -> DeploymentState:
        dep = self.deployment(spec)
        try:
            dep.apply()
            url = dep.wait_ready(spec.ready_timeout_s)
        except BaseException:
            dep.delete()  # nothing half-created stays behind
            raise
        finally:
            dep.close()
        return DeploymentState(name=spec.name, target="cluster", model=spec.model, endpoint=url, engines=(url,),
                               namespace=dep.namespace, deployment=dep.state())

    def delete(self, state: DeploymentState) -> None:
        dep = self._from_state(state)
        try:
            dep.delete()
        finally:
            dep.close()

    def set_traffic(self, router: DeploymentState, model: str, update: TrafficUpdate | None) -> None:
        if router.deployment.get("format") != "llmisvc":
            put_traffic(router.endpoint, model, update)
            return
        route: dict[str, JSON] = (
            {v.name: {"group": router.name, "weight": round(v.weight)} for v in update.versions}
            if update is not None else {router.name: {"group": None, "weight": None}}
        )  # fmt: skip
        dep = self._from_state(router)
        try:
            for name, fields in route.items():
                _merge_patch(dep, name, {"spec": {"router": {"route": fields}}})
        finally:
            dep.close()

    def _from_state(self, state: DeploymentState) -> LLMDeployment:
        return LLMDeployment.from_state(state.deployment, kube=self._kube, clock=self._clock, sleep=self._sleep,
                                        poll=self._poll)


def _merge_patch(dep: LLMDeployment, name: str, body: JSON) -> None:
    """JSON merge patch of one LLMInferenceService (``null`` removes a field)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    resource = resource_for_kind("LLMInferenceService", LLMISVC_API)
    try:
        client.CustomObjectsApi(dep.client()).patch_namespaced_custom_object(
            resource.group, resource.version, dep.namespace, resource.plural, name, body
        )
    except ApiException as exc:
        raise KubeError(f"cannot set the route weight of LLMInferenceService {dep.namespace}/{name}: "
                        f"{exc.status} {exc.reason}: {str(exc.body)[:300]}", param="traffic") from None
