"""The OpenAI-compatible proxy's routes: one request in, one endpoint picked, the answer passed through.

Per request (``Proxy.generate``)::

    auth ─▶ orjson parse ONCE (the server read the body under its limit) ─▶ model → candidates (healthy, serving it)
         ─▶ RequestContext (tokenize only when a prefix matcher needs ids) ─▶ Scheduler.schedule
         ─▶ Forwarder.forward (``forward.py``): in-flight books, retries on connect failure, the answer relayed
            chunk by chunk (or, with P/D, ``PDOrchestrator.handle``: prefill, then the same forward to decode)

Served by the router's own HTTP server (``server.py``): every handler takes a parsed ``Request`` whose body was read
under the size limit. Errors become HTTP responses only through ``Response.error``.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable

from kserve_llmd.errors import (
    AuthenticationError,
    InvalidRequestError,
    KserveLlmdError,
    ModelNotFoundError,
    NoEndpointError,
    OverloadedError,
)
from kserve_llmd.http import parse_json_object
from kserve_llmd.router.config import RouterConfig
from kserve_llmd.router.endpoints import EndpointRegistry
from kserve_llmd.router.forward import REQUEST_ID_KEY, Forwarder
from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.messages import Request, Response, Routes, Stream
from kserve_llmd.router.metrics import RouterMetrics
from kserve_llmd.router.pd import PDOrchestrator
from kserve_llmd.router.plugins import prefix_affinity_filter as affinity_filter
from kserve_llmd.router.scheduler import Scheduler
from kserve_llmd.router.tokenization import LocalTokenization, RequestTokenizer
from kserve_llmd.router.traffic import VERSION_HEADER, TrafficSplit
from kserve_llmd.router.upstream import UpstreamPool

log = logging.getLogger(__name__)

SESSION_HEADERS = ("x-session-token", "x-session-id")
_CHARS_PER_TOKEN = 4  # prompt-size estimate from the body size when nothing tokenizes


class Proxy:
    def __init__(
        self,
        config: RouterConfig,
        registry: EndpointRegistry,
        scheduler: Scheduler,
        metrics: RouterMetrics,
        pool: Callable[[], UpstreamPool],
        tokenization: RequestTokenizer | None,
        *,
        traffic: TrafficSplit | None = None,
        pd: PDOrchestrator | None = None,
    ) -> None:
        self._traffic = traffic
        self._pd = pd
        self._cfg = config
        self._registry = registry
        self._scheduler = scheduler
        self._metrics = metrics
        self._tokenization = tokenization
        self._local = tokenization if isinstance(tokenization, LocalTokenization) else None
        self._api_key = None if config.api_key is None else config.api_key.get_secret_value().encode()
        self._max_attempts = config.limits.max_attempts
        #: Set when the router is draining before it stops: ``/health`` answers 503, requests are still served.
        self.draining = False
        self._default_max_tokens = config.limits.default_max_tokens
        self._observe_decision = metrics.decision_latency.observe
        self._observe_ratio = metrics.prefix_match_ratio.observe
        self._affinity = {d: metrics.affinity.labels(d) for d in (affinity_filter.KEPT, affinity_filter.YIELDED)}
        self.forwarder = Forwarder(pool, metrics, drop_auth=self._api_key is not None,
                                   max_error_body=config.limits.max_error_body_bytes)

    # ------------------------------------------------------------------------------------------- routes

    def add_routes(self, routes: Routes) -> None:
        routes.add("POST", "/v1/completions", self.generate)
        routes.add("POST", "/v1/chat/completions", self.generate)
        routes.add("GET", "/v1/models", self.models)
        self.add_admin_routes(routes)

    def add_admin_routes(self, routes: Routes) -> None:
        """``/health`` and ``/metrics``: on the client port, and alone on the admin listener (``admin_port``)."""
        routes.add("GET", "/health", self.health)
        routes.add("GET", "/metrics", self.metrics)

    def models(self, request: Request) -> Response:
        try:
            self._auth(request)
        except KserveLlmdError as exc:
            return Response.error(exc)
        return Response.json({"object": "list", "data": self._registry.model_cards()})

    def health(self, request: Request) -> Response:
        if self.draining:
            return Response.error(OverloadedError("the router is shutting down"))
        healthy = self._registry.healthy_count()
        if healthy == 0:
            return Response.error(NoEndpointError("no healthy endpoint"))
        return Response.json({"status": "ok", "healthy_endpoints": healthy, "endpoints": len(self._registry)})

    def metrics(self, request: Request) -> Response:
        return Response(self._metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"})

    # ------------------------------------------------------------------------------------------- generate

    async def generate(self, request: Request) -> Response | Stream:
        try:
            self._auth(request)
            raw = request.body
            started = time.perf_counter()
            body = parse_json_object(raw)
            ctx, candidates = await self._context(request, body, raw)
            result = self._scheduler.schedule(ctx, candidates)
            primary = result.primary
            if primary.target is None:
                raise NoEndpointError(
                    f"no endpoint for model {ctx.model!r} is left after filter {primary.emptied_by!r}"
                )
            self._observe_decision(time.perf_counter() - started)
            if ctx.prefix is not None and ctx.prefix.total_blocks:
                self._observe_ratio(ctx.prefix.ratio(primary.target.id))
                affinity = ctx.cycle_state.get(affinity_filter.DECISION)
                if affinity is not None:
                    self._affinity[affinity].inc()
        except KserveLlmdError as exc:
            return Response.error(exc)
        targets = [primary.target, *primary.fallbacks[: self._max_attempts - 1]]
        if self._pd is not None:  # P/D: the decision, then prefill + decode (or this same forward)
            fwd = self.forwarder
            return await self._pd.handle(request, ctx, raw, result, targets, fwd.forward, fwd.headers,
                                         self._max_attempts)
        return await self.forwarder.forward(request, ctx, raw, targets)

    def authorize(self, request: Request) -> None:
        """Raise ``AuthenticationError`` unless the request carries the API key (when one is set)."""
        self._auth(request)

    def _auth(self, request: Request) -> None:
        if self._api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._api_key):
            raise AuthenticationError("missing or invalid API key")

    async def _context(self, request: Request, body: dict[str, object], raw: bytes
                       ) -> tuple[RequestContext, list[Endpoint]]:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequestError("the model field is required and must be a string", param="model")
        registry = self._registry
        candidates = registry.candidates(model)
        if not candidates:
            if registry.serves(model) or not registry.knows_all_models():
                raise NoEndpointError(f"no healthy endpoint serves model {model!r}")
            raise ModelNotFoundError(f"The model `{model}` does not exist.", param="model")
        if self._traffic is not None:
            version = self._traffic.choose(model, request.headers.get(VERSION_HEADER))
            if version is not None:  # a canary split: schedule among the chosen version's endpoints only
                allowed = version.endpoint_ids
                candidates = [ep for ep in candidates if ep.id in allowed]
                if not candidates:
                    raise NoEndpointError(f"no healthy endpoint of version {version.name!r} serves model {model!r}")
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_completion_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
            max_tokens = self._default_max_tokens
        headers = request.headers
        session = headers.get(SESSION_HEADERS[0]) or headers.get(SESSION_HEADERS[1])
        salt = body.get("cache_salt")
        lora = model if registry.is_lora(model) else None
        ctx = RequestContext(
            request_id=headers.get(REQUEST_ID_KEY) or os.urandom(16).hex(),
            model=registry.base_model(model) if lora is not None else model,
            path=request.path,
            body=body,
            lora=lora,
            cache_salt=salt if isinstance(salt, str) else None,
            session_id=session,
            max_tokens=max_tokens,
            stream=body.get("stream") is True,
        )
        if self._scheduler.needs_prefix and self._tokenization is not None:
            tok = self._local.tokenize_sync(body) if self._local is not None else \
                await self._tokenization.tokenize(body, ctx.model)
            ctx.token_ids, ctx.prompt_text = tok.token_ids, tok.text
            if tok.token_ids is not None:
                ctx.prompt_tokens = len(tok.token_ids)
            else:
                ctx.prompt_tokens = len(tok.text or "") // _CHARS_PER_TOKEN
        else:
            ctx.prompt_tokens = len(raw) // _CHARS_PER_TOKEN
        return ctx, candidates
