"""Prefill/decode disaggregation through the router: the per-request decision and the two-step NixlConnector flow.

Per request, after scheduling (``PDOrchestrator.handle``, called by the proxy with the decode profile's targets)::

    x-prefiller-host-port? ── unknown endpoint ─▶ 403, no outbound call (sidecar.py)
          │ known: prefill = that endpoint (reason ``header``)
          ▼
    prefill profile ran and picked p?  no ─▶ aggregated (``below-threshold`` | ``no-prefill-endpoint``)
          ▼ yes
    decider (prefix-based-pd-decider; none configured: ``always``, KServe's default) ─▶ aggregated | disaggregated
          ▼ disaggregated
    1. POST p  (same X-Request-Id) body = client body with stream=false, stream_options removed, max_tokens=1,
       max_completion_tokens=1 (if present), min_tokens removed, kv_transfer_params={do_remote_decode: true, ...}
    2. the answer's top-level kv_transfer_params (do_remote_prefill: true, remote_block_ids, remote_host, ...)
    3. POST d  body = the ORIGINAL client body + those kv_transfer_params verbatim, through the proxy's own
       forwarding path (retries on connect failure, chunk-by-chunk streaming, in-flight books)

Failures: the prefill leg failing (connect, timeout, 5xx/429, no ``kv_transfer_params``) falls back to the aggregated
decode when ``pd.fallback_to_aggregated`` (counted), else answers the OpenAI-shaped error; a 4xx from the prefill is
the client's fault and is passed through. A decode failing after a successful prefill passes the decode's error on
(counted); the prefill's blocks stay leased until the engine's lease ends (vLLM: 30 s; vLLM offers no release call)
unless ``pd.release_path`` names one (the simulator's ``/_sim/kv_pull``), which the router then calls. A client gone
between the steps (handler cancelled, or its transport closing) means the decode request is never sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field

from kserve_llmd.errors import ConfigError, KserveLlmdError, KVTransferError, UpstreamFailedError, UpstreamTimeoutError
from kserve_llmd.http import JSON_CONTENT_TYPE
from kserve_llmd.router.endpoints import EndpointRegistry, PrefillHold
from kserve_llmd.router.interfaces import Endpoint, PDDecider, PDDecision, RequestContext
from kserve_llmd.router.loopmetrics import Counter, Histogram, LoopCollector
from kserve_llmd.router.messages import CLIENT_CLOSED, Request, Response, Stream
from kserve_llmd.router.sidecar import PREFILLER_HEADER, prefiller_from_header
from kserve_llmd.types import JSON, Clock

if TYPE_CHECKING:
    from kserve_llmd.router.plugins._base import PluginDeps
    from kserve_llmd.router.registry import SchedulerSpec
    from kserve_llmd.router.scheduler import SchedulingResult

log = logging.getLogger(__name__)

Forward = Callable[[Request, RequestContext, bytes, Sequence[Endpoint]], Awaitable[Response | Stream]]
HeadersFor = Callable[[Request, str], CIMultiDict[str]]
PREFILL_KV_PARAMS: JSON = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
                           "remote_block_ids": None, "remote_host": None, "remote_port": None}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_CONNECT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, aiohttp.ServerDisconnectedError)


class PDConfig(BaseModel):
    """How the router runs the two steps (the decision itself is the decider plugin's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: A failed prefill leg falls back to the aggregated decode (counted) instead of failing the request.
    fallback_to_aggregated: bool = True
    #: Whole prefill leg (first byte to last), seconds.
    prefill_timeout: float = Field(default=600.0, gt=0)
    #: POSTed ``{transfer_id, request_id, engine_id}`` on the prefill engine to free a lease the decode will never
    #: pull. vLLM has no such call (None: leases run out); the simulator's is ``/_sim/kv_pull``.
    release_path: str | None = None


def prefill_body(body: JSON) -> JSON:
    """REFERENCE 1.4 step 2: the prefill request derived from the client's body (the client's dict is not touched)."""
    out = {k: v for k, v in body.items() if k not in ("stream_options", "min_tokens")}
    out["stream"] = False
    out["max_tokens"] = 1
    if "max_completion_tokens" in out:
        out["max_completion_tokens"] = 1
    out["kv_transfer_params"] = dict(PREFILL_KV_PARAMS)
    return out


class PDMetrics:
    """P/D series on the router's own registry (prefix ``kserve_llmd_router_pd_``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = "kserve_llmd_router_pd"
        self.decisions = Counter(f"{p}_decisions", "P/D decisions by outcome and reason.", ["decision", "reason"])
        self.prefill_latency = Histogram(f"{p}_prefill_latency_seconds", "Successful prefill legs, send to answer.",
                                         buckets=LATENCY_BUCKETS)
        self.fallbacks = Counter(f"{p}_fallbacks", "Failed prefill legs served aggregated instead.", ["reason"])
        self.failures = Counter(f"{p}_failures", "Disaggregated requests that failed, by stage and reason.",
                                ["stage", "reason"])
        self.releases = Counter(f"{p}_lease_releases", "Prefill leases the router asked to free.", ["outcome"])
        registry.register(LoopCollector([self.decisions, self.prefill_latency, self.fallbacks, self.failures,
                                         self.releases]))


@dataclass(slots=True)
class _Prefilled:
    endpoint: Endpoint
    params: JSON


@dataclass(slots=True)
class _PrefillFailed:
    reason: str
    error: KserveLlmdError | None = None  # None with ``response``: a client error passed through
    response: Response | None = None


class PDOrchestrator:
    def __init__(self, config: PDConfig, registry: EndpointRegistry, session: Callable[[], aiohttp.ClientSession],
                 metrics: PDMetrics, *, decider: PDDecider | None, prefill_profile: str | None,
                 connect_timeout: float, clock: Clock) -> None:
        self._cfg = config
        self._registry = registry
        self._session = session
        self._metrics = metrics
        self._decider = decider
        self._prefill_profile = prefill_profile
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=config.prefill_timeout, sock_connect=connect_timeout)
        self._release_timeout = aiohttp.ClientTimeout(total=max(connect_timeout, 1.0))

    # ------------------------------------------------------------------------------------------- decision

    def plan(self, request: Request, ctx: RequestContext, result: SchedulingResult,
             decode: Endpoint) -> tuple[list[Endpoint], PDDecision] | None:
        """Prefill targets and the decision; ``None`` when P/D is not configured and no header asks for it."""
        pinned = prefiller_from_header(request.headers, self._registry)
        if pinned is not None:
            return [pinned], PDDecision(True, "header")
        if self._prefill_profile is None:
            return None
        picked = result.profiles.get(self._prefill_profile)
        if picked is None:
            return [], PDDecision(False, "below-threshold")
        if picked.target is None:
            return [], PDDecision(False, "no-prefill-endpoint")
        targets = [picked.target, *picked.fallbacks]
        if self._decider is None:
            return targets, PDDecision(True, "always")
        return targets, self._decider.decide(ctx, decode, picked.target)

    # ------------------------------------------------------------------------------------------- the flow

    async def handle(self, request: Request, ctx: RequestContext, raw: bytes, result: SchedulingResult,
                     decode_targets: Sequence[Endpoint], forward: Forward, headers_for: HeadersFor,
                     max_attempts: int) -> Response | Stream:
        try:
            planned = self.plan(request, ctx, result, decode_targets[0])
        except KserveLlmdError as exc:
            return Response.error(exc)
        if planned is None:
            return await forward(request, ctx, raw, decode_targets)
        prefill_targets, decision = planned
        self._metrics.decisions.labels("disaggregated" if decision.disaggregate else "aggregated",
                                       decision.reason).inc()
        if not decision.disaggregate:
            return await forward(request, ctx, raw, decode_targets)
        headers = headers_for(request, ctx.request_id)
        headers.popall(PREFILLER_HEADER, None)
        try:
            outcome = await self._prefill(ctx, prefill_targets[:max_attempts], headers)
        except asyncio.CancelledError:  # the client left during the prefill (the engine sees the abort)
            self._metrics.failures.labels("between_steps", "client_disconnected").inc()
            raise
        if isinstance(outcome, _PrefillFailed):
            return await self._prefill_failed(request, ctx, raw, decode_targets, forward, outcome)
        prefilled = outcome
        if request.client_gone:  # gone after it: never send the decode
            self._metrics.failures.labels("between_steps", "client_disconnected").inc()
            await self._release(prefilled, ctx.request_id)
            return Response(status=CLIENT_CLOSED)
        decode_raw = orjson.dumps({**ctx.body, "kv_transfer_params": prefilled.params})
        response = await forward(request, ctx, decode_raw, decode_targets)
        if response.status != 200:
            self._metrics.failures.labels("decode", str(response.status)).inc()
            log.warning("request %s: decode failed with %d after a prefill on %s", ctx.request_id, response.status,
                        prefilled.endpoint.id)
            await self._release(prefilled, ctx.request_id)
        return response

    async def _prefill_failed(self, request: Request, ctx: RequestContext, raw: bytes,
                              decode_targets: Sequence[Endpoint], forward: Forward,
                              failed: _PrefillFailed) -> Response | Stream:
        if failed.response is not None:  # the client's fault: the decode would say the same
            self._metrics.failures.labels("prefill", failed.reason).inc()
            return failed.response
        assert failed.error is not None
        log.warning("request %s: prefill failed (%s): %s", ctx.request_id, failed.reason, failed.error.message)
        if self._cfg.fallback_to_aggregated:
            self._metrics.fallbacks.labels(failed.reason).inc()
            return await forward(request, ctx, raw, decode_targets)
        self._metrics.failures.labels("prefill", failed.reason).inc()
        return Response.error(failed.error)

    async def _prefill(self, ctx: RequestContext, targets: Sequence[Endpoint],
                       headers: CIMultiDict[str]) -> _Prefilled | _PrefillFailed:
        body = orjson.dumps(prefill_body(ctx.body))
        tokens = ctx.prompt_tokens + 1
        unreachable = []
        for ep in targets:
            started = self._clock()
            ep.inflight_requests += 1
            ep.inflight_tokens += tokens
            prefill = PrefillHold(ep, ctx)  # the whole leg is prefill: held until its answer
            try:
                async with self._session().post(ep.url + ctx.path, data=body, headers=headers,
                                                timeout=self._timeout) as resp:
                    status, data = resp.status, await resp.read()
                    content_type = resp.headers.get("Content-Type", JSON_CONTENT_TYPE)
            except _CONNECT_ERRORS as exc:
                unreachable.append(f"{ep.id}: {exc!r}")
                continue
            except TimeoutError:
                return _PrefillFailed("prefill_timeout", UpstreamTimeoutError(f"prefill {ep.id} did not answer in "
                                                                              f"{self._cfg.prefill_timeout} s"))
            except aiohttp.ClientError as exc:
                return _PrefillFailed("prefill_failed", UpstreamFailedError(f"prefill {ep.id} failed: {exc!r}"))
            finally:
                ep.inflight_requests -= 1
                ep.inflight_tokens -= tokens
                prefill.release()
            return self._parse(ctx, ep, status, data, content_type, self._clock() - started)
        return _PrefillFailed("prefill_unreachable", UpstreamFailedError(
            f"no prefill endpoint could be reached: {'; '.join(unreachable)}"))

    def _parse(self, ctx: RequestContext, ep: Endpoint, status: int, data: bytes, content_type: str,
               elapsed: float) -> _Prefilled | _PrefillFailed:
        if 400 <= status < 500 and status not in (408, 429):
            return _PrefillFailed(f"prefill_{status}", response=Response(
                data, status, {"Content-Type": content_type, "X-Request-Id": ctx.request_id}))
        if status != 200:
            return _PrefillFailed("prefill_error", UpstreamFailedError(
                f"prefill {ep.id} answered {status}: {data[:300].decode(errors='replace')}"))
        try:
            answer: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            answer = None
        params = answer.get("kv_transfer_params") if isinstance(answer, dict) else None
        if not isinstance(params, dict):
            return _PrefillFailed("prefill_no_params", KVTransferError(
                f"prefill {ep.id} answered without kv_transfer_params (is its KV connector configured?)", status=502))
        self._metrics.prefill_latency.observe(elapsed)
        return _Prefilled(ep, params)

    async def _release(self, prefilled: _Prefilled, request_id: str) -> None:
        """Free a lease the decode will never pull, when the engine offers a way (best effort, counted)."""
        path = self._cfg.release_path
        if path is None:
            return
        params = prefilled.params
        body = {"transfer_id": params.get("remote_request_id"), "request_id": request_id,
                "engine_id": params.get("remote_engine_id")}
        outcome = "failed"
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self._session().post(prefilled.endpoint.url + path, data=orjson.dumps(body),
                                            headers={"Content-Type": JSON_CONTENT_TYPE},
                                            timeout=self._release_timeout) as resp:
                outcome = "released" if resp.status == 200 else "not_found" if resp.status == 404 else "failed"
        self._metrics.releases.labels(outcome).inc()


def build_pd(spec: SchedulerSpec, deps: PluginDeps, config: PDConfig, registry: EndpointRegistry,
             session: Callable[[], aiohttp.ClientSession], metrics_registry: CollectorRegistry, *,
             connect_timeout: float) -> PDOrchestrator:
    """The orchestrator for a parsed scheduler config: its decider (at most one) and its prefill profile."""
    from kserve_llmd.router.plugins import pd_profile_handler

    deciders = [p for p in spec.plugins.values() if p.plugin_type.kind == "pd-decider"]
    if len(deciders) > 1:
        raise ConfigError(f"more than one P/D decider: {', '.join(d.ref for d in deciders)}", param="plugins")
    handler = spec.plugins[spec.handler].params
    prefill_profile = handler.prefillProfile if isinstance(handler, pd_profile_handler.Parameters) else None
    if deciders and prefill_profile is None:
        raise ConfigError(f"plugin {deciders[0].ref!r}: a P/D decider needs a pd-profile-handler",
                          param=f"plugins.{deciders[0].ref}")
    decider = deciders[0].plugin_type.factory(deciders[0].ref, deciders[0].params, deps) if deciders else None
    return PDOrchestrator(config, registry, session, PDMetrics(metrics_registry), decider=decider,
                          prefill_profile=prefill_profile, connect_timeout=connect_timeout, clock=deps.clock)
