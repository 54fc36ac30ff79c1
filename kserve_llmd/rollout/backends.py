"""Where a deployment runs: one ``Backend`` per target, registered explicitly (no fallback for unknown targets).

A backend deploys a ``DeploySpec`` (returning only once it is Ready, and cleaning up after itself when it is not),
deletes a deployment from its ``DeploymentState`` alone (another process may do it), and sets the traffic split of a
model at the deployment's router (``None`` removes it).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import aiohttp

from kserve_llmd.errors import ConfigError, UpstreamFailedError
from kserve_llmd.rollout.spec import DeploySpec
from kserve_llmd.rollout.state import DeploymentState, Target
from kserve_llmd.router.traffic import TrafficUpdate


class Backend(Protocol):
    def deploy(self, spec: DeploySpec) -> DeploymentState: ...

    def delete(self, state: DeploymentState) -> None: ...

    def set_traffic(self, router: DeploymentState, model: str, update: TrafficUpdate | None) -> None: ...


def backend_for(target: Target) -> Backend:
    if target == "local":
        from kserve_llmd.rollout.local import LocalBackend

        return LocalBackend()
    if target == "cluster":
        from kserve_llmd.rollout.cluster import ClusterBackend

        return ClusterBackend()
    raise ConfigError(f"target: unknown target {target!r} (local or cluster)", param="target")


def put_traffic(router_url: str, model: str, update: TrafficUpdate | None, api_key: str | None = None) -> None:
    """``PUT /admin/traffic`` (or ``DELETE /admin/traffic/{model}``) on a kserve-llmd router."""
    asyncio.run(_put_traffic(router_url, model, update, api_key))


async def _put_traffic(router_url: str, model: str, update: TrafficUpdate | None, api_key: str | None) -> None:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    base = router_url.rstrip("/") + "/admin/traffic"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), headers=headers) as session:
        if update is None:
            request = session.delete(f"{base}/{model}")
        else:
            request = session.put(base, data=update.model_dump_json(), headers={"Content-Type": "application/json"})
        try:
            async with request as response:
                if response.status >= 300 and not (update is None and response.status == 404):
                    text = (await response.text())[:500]
                    raise UpstreamFailedError(f"router {router_url}: traffic update answered {response.status}: {text}")
        except aiohttp.ClientError as exc:
            raise UpstreamFailedError(f"router {router_url}: traffic update failed: {exc}") from None
