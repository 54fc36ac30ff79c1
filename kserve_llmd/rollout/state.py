"""``DeploymentState``: everything a later pipeline step needs to find, benchmark, re-weight or stop a deployment.

It crosses KFP step boundaries as a JSON string (each step is its own process, on a cluster its own pod), so it holds
only data: URLs, and the SDK deployment's own ``state()`` (``LocalDeployment``: the pid and exact command line of
every process ``deploy`` started; ``LLMDeployment``: its spec), so that ``teardown`` in another process deletes
exactly that deployment (and never a process that merely reused a pid).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kserve_llmd.errors import ConfigError

Target = Literal["local", "cluster"]


class DeploymentState(BaseModel):
    """One deployed version of a model: where to send requests, and what to stop when it goes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)  # the version name, e.g. "stable" or "canary"
    target: Target
    model: str
    endpoint: str  # the URL clients use (the router)
    engines: tuple[str, ...] = ()  # engine base URLs behind the router (what a traffic split points at)
    namespace: str | None = None  # cluster target
    #: ``LocalDeployment.state()`` or ``LLMDeployment.state()``: what ``from_state(...).delete()`` needs.
    deployment: dict[str, Any] = Field(default_factory=dict)

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
