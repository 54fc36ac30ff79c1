"""``DeploymentState``: everything a later pipeline step needs to find, benchmark, re-weight or stop a deployment.

It crosses KFP step boundaries as a JSON string (each step is its own process, on a cluster its own pod), so it holds
only data: URLs, and for local deployments the pids and command lines of the processes ``deploy`` started, so that
``teardown`` in another process can stop exactly those (and nothing that merely reused a pid).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kserve_llmd.errors import ConfigError

Target = Literal["local", "cluster"]


class ProcessRef(BaseModel):
    """A detached local process started by ``deploy`` (its own session: pid == process group id)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pid: int = Field(gt=1)
    role: Literal["sim", "router"]
    argv: tuple[str, ...]
    log: str


class DeploymentState(BaseModel):
    """One deployed version of a model: where to send requests, and what to stop when it goes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)  # the version name, e.g. "stable" or "canary"
    target: Target
    model: str
    endpoint: str  # the URL clients use (the router)
    engines: tuple[str, ...] = ()  # engine base URLs behind the router (what a traffic split points at)
    processes: tuple[ProcessRef, ...] = ()  # local target
    namespace: str | None = None  # cluster target
    workdir: str | None = None  # local target: logs and ready files

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str, *, param: str = "state") -> DeploymentState:
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(root)"
            raise ConfigError(f"{param}: not a deployment state JSON ({where}: {first['msg']})", param=param) from None
