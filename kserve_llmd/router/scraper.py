"""Scrapes every endpoint's ``/metrics`` (and ``/health``, ``/v1/models``) on an interval; marks health.

Parsing is cheap: only the lines of the vLLM series the scheduler reads are looked at
(``vllm:num_requests_running``, ``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc`` with the older
``vllm:gpu_cache_usage_perc`` as fallback, ``vllm:lora_requests_info``, ``vllm:cache_config_info``); with several
engine label sets (data parallel) queues are summed and KV usage averaged.

Health: ``failure_threshold`` consecutive failed scrapes, or failed ``/health`` checks, mark the endpoint
unhealthy; a success of each marks it healthy again (an unhealthy endpoint is health-checked every tick). The proxy
also marks an endpoint unhealthy at once when connecting to it fails or it dies mid-response (passive health); it
comes back the same way, after one round in which both its metrics and its health answered.
Staleness: the scrape time is stored in ``EngineMetrics.scraped_at`` (router clock); scorers judge freshness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

from kserve_llmd.aio import stop_tasks
from kserve_llmd.router.config import ScrapeConfig
from kserve_llmd.router.endpoints import EndpointRegistry
from kserve_llmd.router.interfaces import Endpoint, EngineMetrics
from kserve_llmd.router.metrics import RouterMetrics
from kserve_llmd.types import JSON, Clock, EndpointId

log = logging.getLogger(__name__)

_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_WANTED = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "vllm:lora_requests_info",
    "vllm:cache_config_info",
)


@dataclass(slots=True)
class ParsedMetrics:
    running: float = 0.0
    waiting: float = 0.0
    kv_usage: float | None = None
    running_loras: frozenset[str] = frozenset()
    waiting_loras: frozenset[str] = frozenset()
    max_lora: int = 0
    block_size: int | None = None


def _split_names(value: str) -> frozenset[str]:
    return frozenset(x for x in (s.strip() for s in value.split(",")) if x)


def parse_vllm_metrics(text: str) -> ParsedMetrics:
    """The scheduler's view of a vLLM ``/metrics`` page. Unknown or malformed lines are skipped."""
    out = ParsedMetrics()
    kv_new: list[float] = []
    kv_old: list[float] = []
    lora_best = float("-inf")
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name = line[:brace]
            end = line.rfind("}")
            if end == -1:
                continue
            labels, rest = line[brace + 1:end], line[end + 1:]
        else:
            name, labels, rest = line[:space], "", line[space:]
        if name not in _WANTED:
            continue
        fields = rest.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if name == "vllm:num_requests_running":
            out.running += value
        elif name == "vllm:num_requests_waiting":
            out.waiting += value
        elif name == "vllm:kv_cache_usage_perc":
            kv_new.append(value)
        elif name == "vllm:gpu_cache_usage_perc":
            kv_old.append(value)
        elif name == "vllm:lora_requests_info":
            # one series per label set; the value is the time it was set: the newest wins
            if value >= lora_best:
                lora_best = value
                lab = dict(_LABEL_RE.findall(labels))
                out.running_loras = _split_names(lab.get("running_lora_adapters", ""))
                out.waiting_loras = _split_names(lab.get("waiting_lora_adapters", ""))
                with contextlib.suppress(ValueError):
                    out.max_lora = int(float(lab.get("max_lora", "0") or 0))
        elif name == "vllm:cache_config_info":
            lab = dict(_LABEL_RE.findall(labels))
            with contextlib.suppress(ValueError):
                out.block_size = int(lab.get("block_size", ""))
    kv = kv_new or kv_old
    if kv:
        out.kv_usage = sum(kv) / len(kv)
    return out


@dataclass(slots=True)
class _State:
    task: asyncio.Task[None] | None = None
    metrics_failures: int = 0
    health_failures: int = 0
    next_health: float = float("-inf")
    next_models: float = float("-inf")
    block_size: int | None = None
    on_models: list[Callable[[Endpoint], None]] = field(default_factory=list)


class Scraper:
    """One loop per endpoint. ``start()`` / ``aclose()``; ``add``/``remove`` follow discovery."""

    def __init__(
        self,
        config: ScrapeConfig,
        registry: EndpointRegistry,
        session: Callable[[], aiohttp.ClientSession],
        clock: Clock,
        metrics: RouterMetrics,
        on_models: Callable[[Endpoint], None] | None = None,
    ) -> None:
        self._cfg = config
        self._registry = registry
        self._session = session
        self._clock = clock
        self._metrics = metrics
        self._on_models = on_models
        self._states: dict[EndpointId, _State] = {}
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self._started = False

    def block_size(self, ep_id: EndpointId) -> int | None:
        state = self._states.get(ep_id)
        return None if state is None else state.block_size

    async def start(self) -> None:
        self._started = True
        for state_id, state in self._states.items():
            ep = self._registry.get(state_id)
            if ep is not None and state.task is None:
                state.task = asyncio.create_task(self._loop(ep), name=f"scrape {ep.id}")

    async def aclose(self) -> None:
        self._started = False
        for ep_id in list(self._states):
            await self.remove(ep_id)

    def add(self, ep: Endpoint) -> None:
        state = self._states.setdefault(ep.id, _State())
        if self._started and state.task is None:
            state.task = asyncio.create_task(self._loop(ep), name=f"scrape {ep.id}")

    async def remove(self, ep_id: EndpointId) -> None:
        state = self._states.pop(ep_id, None)
        if state is not None:
            await stop_tasks(state.task)

    # ------------------------------------------------------------------------------------------ one round

    async def poll(self, ep: Endpoint) -> None:
        """One round for one endpoint: metrics always; health and models when due (or while unhealthy)."""
        state = self._states.setdefault(ep.id, _State())
        now = self._clock()
        metrics_ok = await self.scrape_metrics(ep)
        if metrics_ok:
            state.metrics_failures = 0
        else:
            state.metrics_failures += 1
        health_ok = False
        if now >= state.next_health or not ep.healthy:
            state.next_health = now + self._cfg.health_interval
            health_ok = await self.check_health(ep)
            if health_ok:
                state.health_failures = 0
            else:
                state.health_failures += 1
        if now >= state.next_models or not ep.models:
            state.next_models = now + self._cfg.models_interval
            await self.fetch_models(ep)
        threshold = self._cfg.failure_threshold
        healthy = state.metrics_failures < threshold and state.health_failures < threshold
        # An unhealthy endpoint (marked here, or at once by the proxy after a refused connection or a reset:
        # passive health) comes back only after a round in which both its metrics and its health answered.
        if not ep.healthy:
            healthy = healthy and metrics_ok and health_ok
        if healthy != ep.healthy:
            log.warning("endpoint %s is now %s", ep.id, "healthy" if healthy else "UNHEALTHY")
            ep.healthy = healthy

    async def scrape_metrics(self, ep: Endpoint) -> bool:
        text = await self._get_text(ep, "/metrics", "metrics")
        if text is None:
            return False
        parsed = parse_vllm_metrics(text)
        m: EngineMetrics = ep.metrics
        m.running, m.waiting = parsed.running, parsed.waiting
        if parsed.kv_usage is not None:
            m.kv_usage = parsed.kv_usage
        m.running_loras, m.waiting_loras, m.max_lora = parsed.running_loras, parsed.waiting_loras, parsed.max_lora
        m.scraped_at = self._clock()
        if parsed.block_size is not None:
            self._states.setdefault(ep.id, _State()).block_size = parsed.block_size
        return True

    async def check_health(self, ep: Endpoint) -> bool:
        return await self._get_text(ep, "/health", "health") is not None

    async def fetch_models(self, ep: Endpoint) -> bool:
        text = await self._get_text(ep, "/v1/models", "models")
        if text is None:
            return False
        try:
            body = orjson.loads(text)
            cards = body["data"]
            if not isinstance(cards, list):
                raise TypeError("data is not a list")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("endpoint %s: bad /v1/models answer: %s", ep.id, exc)
            return False
        before = ep.models
        self._registry.set_models(ep, cards)
        if ep.models != before and self._on_models is not None:
            self._on_models(ep)
        return True

    async def _get_text(self, ep: Endpoint, path: str, what: str) -> str | None:
        try:
            async with self._session().get(ep.url + path, timeout=self._timeout) as resp:
                if resp.status != 200:
                    raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                return await resp.text()
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
            self._metrics.scrape_failures.labels(ep.id, what).inc()
            log.debug("endpoint %s: GET %s failed: %r", ep.id, path, exc)
            return None

    async def _loop(self, ep: Endpoint) -> None:
        while True:
            try:
                await self.poll(ep)
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must never die on a bad answer
                log.exception("endpoint %s: scrape round failed", ep.id)
            await asyncio.sleep(self._cfg.interval)


async def fetch_kv_event_sources(
    session: aiohttp.ClientSession, ep: Endpoint, wait: float
) -> tuple[str, str | None] | None:
    """The engine's KV-event publisher from ``GET /kv_event_sources``. Two shapes are seen: vLLM 0.33 answers a JSON
    array of ``{data_parallel_rank, endpoint, replay_endpoint, topic}``; vLLM 0.32 (checked on the real engine,
    docs/real-vllm-findings.md 1.5) an object keyed by rank (``{"0": {"endpoint": ..., ...}}``, ``{}`` without events).
    A wildcard bind host (``*``, ``0.0.0.0``) is replaced by the endpoint's own host. Returns ``(endpoint,
    replay_endpoint)`` of the lowest rank, or None."""
    try:
        async with session.get(ep.url + "/kv_event_sources", timeout=aiohttp.ClientTimeout(total=wait)) as resp:
            if resp.status != 200:
                return None
            body = orjson.loads(await resp.read())
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
        return None
    sources = _sources(body)
    if sources is None:
        return None
    candidates: list[JSON] = [s for s in sources if isinstance(s, dict) and isinstance(s.get("endpoint"), str)]
    if not candidates:
        return None
    first = min(candidates, key=lambda s: s.get("data_parallel_rank") or 0)
    host = ep.id.rsplit(":", 1)[0]
    replay = first.get("replay_endpoint")
    return _bind_to_host(first["endpoint"], host), _bind_to_host(replay, host) if isinstance(replay, str) else None


def _sources(body: object) -> list[object] | None:
    """The list of per-rank sources, whichever shape the engine answered."""
    if isinstance(body, list):
        return body
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("sources"), list):
        return list(body["sources"])
    ranked: list[object] = []
    for rank, source in body.items():
        if isinstance(source, dict) and isinstance(rank, str) and rank.isdigit():
            ranked.append({**source, "data_parallel_rank": int(rank)})
    return ranked


def _bind_to_host(zmq_url: str, host: str) -> str:
    for wildcard in ("//*:", "//0.0.0.0:", "//[::]:"):
        if wildcard in zmq_url:
            return zmq_url.replace(wildcard, f"//{host}:")
    return zmq_url
