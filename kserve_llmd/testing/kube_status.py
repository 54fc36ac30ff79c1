"""How the API double's pretend controllers walk an object's status, one stage per tick.

InferenceService (KServe v1beta1): ``PredictorReady`` → ``TransformerReady`` (when a transformer is declared) →
``IngressReady`` → ``Ready``, then ``status.url`` and ``status.address.url``.
LLMInferenceService (v1alpha2): ``MainWorkloadReady`` → ``PrefillWorkloadReady`` (when ``spec.prefill``) →
``RouterReady`` (when ``spec.router``) → ``Ready``, then ``status.url``, ``status.address`` and ``status.addresses``.
Conditions not yet reached are ``Unknown``. A held object stays at stage 0; a failing one stops at its failing
condition with ``status: "False"`` and the given reason (an InferenceService also reports
``modelStatus.transitionStatus: BlockedByFailedLoad``, as KServe does when a model cannot load).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSONObj = dict[str, Any]
WALKED_KINDS = ("InferenceService", "LLMInferenceService")
_TIME = "2025-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Failure:
    condition: str
    reason: str
    message: str


def progression(kind: str, spec: JSONObj) -> list[str]:
    """The condition types an object of ``kind`` goes through, in order; ``Ready`` last."""
    if kind == "InferenceService":
        steps = ["PredictorReady"]
        if spec.get("transformer"):
            steps.append("TransformerReady")
        return [*steps, "IngressReady", "Ready"]
    steps = ["MainWorkloadReady"]
    if spec.get("prefill"):
        steps.append("PrefillWorkloadReady")
    if spec.get("router"):
        steps.append("RouterReady")
    return [*steps, "Ready"]


def render_status(
    obj: JSONObj, stage: int, *, url: str, failure: Failure | None = None
) -> tuple[JSONObj, bool]:
    """The status at ``stage`` (0 = just created) and whether the walk is finished (ready or failed)."""
    kind = obj["kind"]
    steps = progression(kind, obj.get("spec") or {})
    conditions: list[JSONObj] = []
    done = False
    failed_at = steps.index(failure.condition) if failure is not None and failure.condition in steps else len(steps) - 1
    for index, ctype in enumerate(steps):
        condition: JSONObj = {"type": ctype, "lastTransitionTime": _TIME}
        if failure is not None and stage >= 1 and (index == failed_at or ctype == "Ready"):
            condition.update(status="False", reason=failure.reason, message=failure.message)
            done = True
        elif (failure is None or index < failed_at) and (index < stage if ctype != "Ready" else stage >= len(steps)):
            condition["status"] = "True"
        else:
            condition.update(status="Unknown", reason="Pending" if stage else "Initializing")
        conditions.append(condition)
    status: JSONObj = {"observedGeneration": obj["metadata"].get("generation", 1), "conditions": conditions}
    ready = failure is None and stage >= len(steps)
    if ready:
        done = True
        name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace", "default")
        internal = f"http://{name}.{namespace}.svc.cluster.local"
        status["url"] = url
        status["address"] = {"url": internal}
        if kind == "LLMInferenceService":
            status["addresses"] = [{"name": "gateway-external", "url": url}, {"name": "internal", "url": internal}]
    if kind == "InferenceService":
        status["modelStatus"] = _model_status(ready, failure)
    return status, done


def _model_status(ready: bool, failure: Failure | None) -> JSONObj:
    if failure is not None:
        return {
            "transitionStatus": "BlockedByFailedLoad",
            "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
            "lastFailureInfo": {"reason": failure.reason, "message": failure.message},
        }
    if ready:
        return {"transitionStatus": "UpToDate", "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"}}
    return {"transitionStatus": "InProgress", "states": {"activeModelState": "", "targetModelState": "Pending"}}
