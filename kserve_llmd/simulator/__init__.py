"""The embedded vLLM-compatible engine simulator (see README.md in this folder)."""

from kserve_llmd.simulator.cluster import EngineInfo, SimCluster
from kserve_llmd.simulator.config import SimConfig
from kserve_llmd.simulator.profiles import PROFILES, TimingParams

__all__ = ["PROFILES", "EngineInfo", "SimCluster", "SimConfig", "TimingParams"]
