"""The router's configuration: ``RouterConfig`` and the llm-d-compatible ``SchedulerConfig`` (EndpointPickerConfig).

Built once at the entry point (``kserve-llmd router`` or a test), validated strictly (unknown fields are errors),
then passed down. Plugin parameters are validated in the scheduler's build phase (``registry.parse_scheduler``),
which names the plugin and the field of any error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from kserve_llmd.errors import ConfigError
from kserve_llmd.router.pd import PDConfig
from kserve_llmd.types import Role

API_VERSIONS = ("llm-d.ai/v1alpha1", "inference.networking.x-k8s.io/v1alpha1")
DEFAULT_PRESET = "precise-prefix"
#: ``transport://address`` (tcp, ipc, inproc, ...): what ZMQ's connect() accepts.
_ZMQ_ENDPOINT = re.compile(r"[a-z0-9+]+://.+")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PluginSpec(_Strict):
    """One ``plugins[]`` entry: ``{name, type, parameters}`` (``name`` defaults to ``type``)."""

    type: str
    name: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)

    @property
    def ref(self) -> str:
        return self.name or self.type


class ProfilePluginRef(_Strict):
    pluginRef: str
    weight: float | None = Field(default=None, ge=0)


class ProfileSpec(_Strict):
    name: str
    plugins: list[ProfilePluginRef]


class SchedulerConfig(_Strict):
    """llm-d's ``EndpointPickerConfig``."""

    apiVersion: Literal["llm-d.ai/v1alpha1", "inference.networking.x-k8s.io/v1alpha1"] = "llm-d.ai/v1alpha1"
    kind: Literal["EndpointPickerConfig"] = "EndpointPickerConfig"
    plugins: list[PluginSpec]
    schedulingProfiles: list[ProfileSpec] = Field(min_length=1)


class EndpointSpec(_Strict):
    """A static endpoint: its OpenAI base URL and, optionally, its KV-event ZMQ publisher and that publisher's
    replay ROUTER (vLLM's ``endpoint`` / ``replay_endpoint``). Without ``kv_events`` the router asks the engine
    (``GET /kv_event_sources``, which also names the replay socket); with ``kv_events`` but no
    ``kv_events_replay`` there is no replay (no history on join, a gap resets the endpoint)."""

    url: str
    kv_events: str | None = None
    kv_events_replay: str | None = None
    role: Role = "both"

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"endpoint URL must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("kv_events", "kv_events_replay")
    @classmethod
    def _check_zmq(cls, value: str | None) -> str | None:
        if value is not None and not _ZMQ_ENDPOINT.fullmatch(value):
            raise ValueError(f"expected a ZMQ endpoint such as tcp://host:5557, got {value!r}")
        return value

    @model_validator(mode="after")
    def _replay_needs_publisher(self) -> EndpointSpec:
        if self.kv_events_replay is not None and self.kv_events is None:
            raise ValueError("kv_events_replay needs kv_events (the publisher the replay belongs to)")
        return self

    @classmethod
    def parse(cls, text: str, role: Role = "both") -> EndpointSpec:
        """The CLI form: ``URL``, ``URL=PUB`` or ``URL=PUB,REPLAY`` (ZMQ endpoints of the engine's KV-event
        publisher and of its replay ROUTER), e.g. ``http://e:8000=tcp://e:5557,tcp://e:5558``."""
        url, sep, zmq = text.partition("=")
        if not sep:
            return cls(url=url, role=role)
        pub, comma, replay = zmq.partition(",")
        if not pub or (comma and (not replay or "," in replay)):
            raise ConfigError(f"--endpoint {text!r}: expected URL, URL=PUB or URL=PUB,REPLAY", param="endpoint")
        return cls(url=url, kv_events=pub, kv_events_replay=replay if comma else None, role=role)


class TimeoutsConfig(_Strict):
    """Timeouts in seconds. Upstream: ``connect``, ``first_byte`` (also the longest silence between chunks),
    ``total``. Client side: ``client_idle``, ``client_header``, ``drain_delay``, ``shutdown_grace``."""

    connect: float = Field(default=5.0, gt=0)
    first_byte: float = Field(default=600.0, gt=0)  # long prefills take minutes
    total: float = Field(default=3600.0, gt=0)
    #: A client's kept-alive connection is closed when no complete request head arrives within this.
    client_idle: float = Field(default=75.0, gt=0)
    #: A request head must be whole this long after its first byte, or the client gets 408 (slow clients that
    #: trickle a head, a byte per idle period, would otherwise hold a connection for ever).
    client_header: float = Field(default=60.0, gt=0)
    #: On SIGTERM the router first keeps serving this long with ``/health`` answering 503, so that Kubernetes takes
    #: it out of its Service before it stops listening (0: stop at once; the rendered manifests set 5).
    drain_delay: float = Field(default=0.0, ge=0)
    #: On shutdown, requests in flight get this long to finish before they are cut.
    shutdown_grace: float = Field(default=60.0, ge=0)


class LimitsConfig(_Strict):
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    #: Endpoints tried per request when connecting fails (never retried once bytes reached the client).
    max_attempts: int = Field(default=3, ge=1)
    #: Connections kept per upstream host (the shared connector's ``limit_per_host``).
    connections_per_host: int = Field(default=1024, ge=1)
    #: Output-token estimate for in-flight accounting when a request gives no ``max_tokens``.
    default_max_tokens: int = Field(default=256, ge=0)
    #: Client connections served at once; the next as many get 503 and are closed, beyond that they are reset.
    #: Each served connection may hold one upstream connection too: the router raises its open-file limit to fit.
    max_connections: int = Field(default=4096, ge=1)
    #: Listen backlog: bursts of new connections beyond it wait for a SYN retransmit (about 1 s).
    listen_backlog: int = Field(default=4096, ge=1)
    #: Upstream error bodies passed through are cut to this size.
    max_error_body_bytes: int = Field(default=64 * 1024, gt=0)


class ScrapeConfig(_Strict):
    interval: float = Field(default=0.1, gt=0)
    timeout: float = Field(default=1.0, gt=0)
    #: Metrics older than this are stale: scorers treat them as unknown (neutral).
    stale_after: float = Field(default=1.0, gt=0)
    #: Consecutive failed scrapes (or health checks) before an endpoint is marked unhealthy.
    failure_threshold: int = Field(default=3, ge=1)
    health_interval: float = Field(default=1.0, gt=0)
    models_interval: float = Field(default=5.0, gt=0)


class RouterConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    #: A second port serving only ``/health`` and ``/metrics``, with its own small connection cap, so probes and
    #: scrapes are answered while client connections are at ``limits.max_connections`` (llm-d's endpoint picker keeps
    #: them apart likewise). None: none (0: ephemeral).
    admin_port: int | None = Field(default=None, ge=0, le=65535)
    endpoints: list[EndpointSpec] = Field(default_factory=list)
    prefill: list[EndpointSpec] = Field(default_factory=list)
    decode: list[EndpointSpec] = Field(default_factory=list)
    scheduler: SchedulerConfig = Field(default_factory=lambda: load_preset(DEFAULT_PRESET))
    #: ``builtin``, a path to a ``tokenizer.json`` (or its folder), or ``engine`` (ask the engine's /tokenize).
    tokenizer: str = "builtin"
    api_key: SecretStr | None = None
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    scrape: ScrapeConfig = Field(default_factory=ScrapeConfig)
    #: Seed of the scheduler's ``random.Random`` when none is injected (None: seeded from os.urandom).
    seed: int | None = None
    #: Prefill/decode: fallback, prefill timeout, lease release (the decision is the scheduler's decider plugin).
    pd: PDConfig = Field(default_factory=PDConfig)

    @model_validator(mode="after")
    def _ports_apart(self) -> RouterConfig:
        if self.admin_port and self.admin_port == self.port:
            raise ValueError(f"admin_port must differ from port ({self.port})")
        return self

    def all_endpoints(self) -> list[EndpointSpec]:
        """Every static endpoint, with the pool role applied to ``prefill``/``decode`` entries."""
        return (
            list(self.endpoints)
            + [e.model_copy(update={"role": "prefill"}) for e in self.prefill]
            + [e.model_copy(update={"role": "decode"}) for e in self.decode]
        )


# ----------------------------------------------------------------------------------------------- settings

#: The sections of ``RouterConfig`` that ``--set SECTION.FIELD=VALUE`` reaches (strict models: unknown fields refused).
SETTABLE: dict[str, type[BaseModel]] = {"timeouts": TimeoutsConfig, "limits": LimitsConfig, "scrape": ScrapeConfig,
                                        "pd": PDConfig}


def parse_settings(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """``["limits.max_connections=8192", ...]`` → ``{"limits": {"max_connections": "8192"}, ...}`` (every settable
    section present). Values stay strings: the section's model converts and checks them (``settings_section``)."""
    out: dict[str, dict[str, str]] = {name: {} for name in SETTABLE}
    for item in items:
        key, eq, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not eq or not dot or not name or section not in out:
            raise ConfigError(f"--set {item!r}: expected SECTION.FIELD=VALUE, SECTION one of {', '.join(SETTABLE)}",
                              param="set")
        out[section][name] = value.strip()
    return out


def settings_section(name: str, values: Mapping[str, object]) -> Any:
    """The ``name`` section of ``RouterConfig`` built from ``values``; a bad or unknown field is named in full."""
    model = SETTABLE[name]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = f"{name}.{'.'.join(str(part) for part in error['loc'])}"
        if error["type"] == "extra_forbidden":
            raise ConfigError(f"{field}: no such setting; {name} has {', '.join(model.model_fields)}",
                              param="set") from None
        raise ConfigError(f"{field}: {error['msg']} (got {error['input']!r})", param="set") from None


def check_settings(items: Iterable[str]) -> None:
    """Raise ``ConfigError`` unless every ``SECTION.FIELD=VALUE`` item would be accepted by the router."""
    for name, values in parse_settings(items).items():
        settings_section(name, values)


# ----------------------------------------------------------------------------------------------- loading


def preset_names() -> list[str]:
    folder = resources.files("kserve_llmd.router") / "presets"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> SchedulerConfig:
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(names)}", param="preset")
    text = (resources.files("kserve_llmd.router") / "presets" / f"{name}.yaml").read_text()
    return parse_scheduler_config(yaml.safe_load(text), source=f"preset {name}")


def load_scheduler_config(path: str | Path) -> SchedulerConfig:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read scheduler config {path}: {exc}", param="config") from None
    return parse_scheduler_config(data, source=str(path))


def parse_scheduler_config(data: Any, *, source: str = "config") -> SchedulerConfig:
    """Strict parse of an EndpointPickerConfig document; errors name the offending field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: an EndpointPickerConfig must be a mapping", param="config")
    try:
        return SchedulerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}", param="config") from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)
