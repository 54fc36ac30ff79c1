"""The ``cluster`` target: an ``LLMInferenceService`` through the SDK's ``LLMDeployment``."""

from __future__ import annotations

from kserve_llmd.errors import ConfigError
from kserve_llmd.rollout.spec import DeploySpec
from kserve_llmd.rollout.state import DeploymentState
from kserve_llmd.router.traffic import TrafficUpdate

_NOT_WIRED = "target: the cluster target is not wired to kserve_llmd.sdk.LLMDeployment yet"


class ClusterBackend:
    def deploy(self, spec: DeploySpec) -> DeploymentState:
        raise ConfigError(_NOT_WIRED, param="target")

    def delete(self, state: DeploymentState) -> None:
        raise ConfigError(_NOT_WIRED, param="target")

    def set_traffic(self, router: DeploymentState, model: str, update: TrafficUpdate | None) -> None:
        raise ConfigError(_NOT_WIRED, param="target")
