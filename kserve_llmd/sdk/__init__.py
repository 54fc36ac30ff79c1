"""Notebook and pipeline SDK: ``LLMDeployment`` (KServe on a cluster) and ``LocalDeployment`` (local processes),
both a ``Deployment``: ``render() → apply() → wait_ready() → endpoint → delete()``. See README.md here."""

from kserve_llmd.sdk.cluster import LLMDeployment
from kserve_llmd.sdk.local import LocalDeployment
from kserve_llmd.sdk.specs import Deployment, PoolSpec, RouterSpec

__all__ = ["Deployment", "LLMDeployment", "LocalDeployment", "PoolSpec", "RouterSpec"]
