"""The ``local`` target: a ``DeploySpec`` as an SDK ``LocalDeployment`` (simulator engines + router as detached
local processes), handed between pipeline steps as its ``state()``.

``deploy`` applies and waits (one ``ready_timeout_s`` budget on an injected clock; on ANY failure the deployment
stops what it started before the error propagates), then detaches: the processes outlive the step. ``delete``
works from the state alone, in another process. Each deployment lives in ``WORKDIR/<name>/`` and rewrites
``deployment.json`` there the moment a process starts: ``cleanup_workdir`` reads those to stop whatever any
deployment of a run left running, whichever step failed and however.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from kserve_llmd.errors import ConfigError
from kserve_llmd.rollout.backends import put_traffic
from kserve_llmd.rollout.spec import DeploySpec
from kserve_llmd.rollout.state import DeploymentState
from kserve_llmd.router.traffic import TrafficUpdate
from kserve_llmd.sdk import LocalDeployment, PoolSpec, RouterSpec
from kserve_llmd.sdk.local import STATE_FILE
from kserve_llmd.types import Clock


class LocalBackend:
    def __init__(self, *, clock: Clock = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep

    def deployment(self, spec: DeploySpec) -> LocalDeployment:
        """The SDK deployment for ``spec`` (not started)."""
        if not spec.workdir:
            raise ConfigError("workdir: the local target needs a folder for logs and ready files", param="workdir")
        return LocalDeployment(
            spec.model, name=spec.name, decode=PoolSpec(replicas=spec.engines),
            router=RouterSpec(preset=spec.router_preset), profile=spec.profile, time_scale=spec.time_scale,
            sim_args=("--seed", str(spec.seed), *spec.sim_args), workdir=Path(spec.workdir) / spec.name,
            clock=self._clock, sleep=self._sleep,
        )  # fmt: skip

    def deploy(self, spec: DeploySpec) -> DeploymentState:
        dep = self.deployment(spec)
        started = self._clock()
        dep.apply(spec.ready_timeout_s)  # stops what it started when it fails
        try:
            url = dep.wait_ready(max(0.0, spec.ready_timeout_s - (self._clock() - started)))
        except BaseException:
            dep.delete()
            raise
        return DeploymentState(
            name=spec.name, target="local", model=spec.model, endpoint=url,
            engines=tuple(str(e["url"]) for e in dep.engines), deployment=dep.detach(),
        )  # fmt: skip

    def delete(self, state: DeploymentState) -> None:
        LocalDeployment.from_state(state.deployment).delete()

    def set_traffic(self, router: DeploymentState, model: str, update: TrafficUpdate | None) -> None:
        put_traffic(router.endpoint, model, update)


def cleanup_workdir(workdir: str | Path) -> int:
    """Stop every process any deployment under ``workdir`` started that still runs (the safety net of local runs).
    Returns how many were stopped."""
    ledgers = sorted(Path(workdir).glob(f"*/{STATE_FILE}"))
    return sum(LocalDeployment.from_state(json.loads(path.read_text())).stop() for path in ledgers)
