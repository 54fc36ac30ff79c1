"""The OpenAI-compatible proxy: one request in, one endpoint picked, bytes passed through as they come.

Per request (``Proxy.generate``)::

    auth ─▶ read body (limit) ─▶ orjson parse ONCE ─▶ model → candidates (healthy, serving it)
         ─▶ RequestContext (tokenize only when a prefix matcher needs ids) ─▶ Scheduler.schedule
         ─▶ in-flight += (requests 1, tokens prompt + max_tokens) ─▶ POST the ORIGINAL bytes upstream
         ─▶ non-200: status + body passed through  |  200: every chunk written to the client as it arrives
         ─▶ in-flight -= ... (always, in ``finally``)

Retries: a connect failure (refused, connect timeout, connection dropped before any answer) moves on to the next
best endpoint of the same profile, up to ``limits.max_attempts`` endpoints; nothing is retried once the upstream
answered, so nothing is ever retried after bytes reached the client. A client that disconnects cancels the handler
(``handler_cancellation``), which closes the upstream connection: the engine sees the abort and frees the request.
Errors become HTTP responses only through ``kserve_llmd.http.error_response``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Sequence

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from kserve_llmd.errors import (
    AuthenticationError,
    InvalidRequestError,
    KserveLlmdError,
    ModelNotFoundError,
    NoEndpointError,
    UpstreamFailedError,
    UpstreamTimeoutError,
)
from kserve_llmd.http import JSON_CONTENT_TYPE, SSE_HEADERS, error_response, json_response, parse_json_object, read_body
from kserve_llmd.router.config import RouterConfig
from kserve_llmd.router.endpoints import EndpointRegistry
from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.metrics import RouterMetrics
from kserve_llmd.router.pd import PDOrchestrator
from kserve_llmd.router.scheduler import Scheduler
from kserve_llmd.router.tokenization import LocalTokenization, RequestTokenizer
from kserve_llmd.router.traffic import VERSION_HEADER, TrafficSplit

log = logging.getLogger(__name__)

REQUEST_ID = "X-Request-Id"
SESSION_HEADERS = ("x-session-token", "x-session-id")
# Not forwarded upstream: hop-by-hop headers, ones aiohttp sets itself, and compression (we pass bytes through).
_DROP = frozenset(
    h.lower() for h in (
        "Host", "Content-Length", "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE",
        "Trailer", "Transfer-Encoding", "Upgrade", "Accept-Encoding", REQUEST_ID, "x-prefiller-host-port",
    )
)
#: Non-streaming answers up to this size (with a Content-Length) are read whole and sent in one write.
_WHOLE_BODY_BYTES = 1024 * 1024
_CHARS_PER_TOKEN = 4  # prompt-size estimate from the body size when nothing tokenizes


class _ConnectFailed(Exception):
    """The upstream could not be reached before it answered anything: safe to try the next endpoint.

    ``refused`` is True when no connection could be made at all (refused, unreachable, connect timeout): the engine
    is down, so the endpoint is marked unhealthy at once (passive health). A pooled connection dropped before the
    answer may just be a stale keep-alive and does not mark it."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


class Proxy:
    def __init__(
        self,
        config: RouterConfig,
        registry: EndpointRegistry,
        scheduler: Scheduler,
        metrics: RouterMetrics,
        session: Callable[[], aiohttp.ClientSession],
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
        self._session = session
        self._tokenization = tokenization
        self._local = tokenization if isinstance(tokenization, LocalTokenization) else None
        self._api_key = None if config.api_key is None else config.api_key.get_secret_value().encode()
        self._max_body = config.limits.max_body_bytes
        self._max_attempts = config.limits.max_attempts
        self._default_max_tokens = config.limits.default_max_tokens
        t = config.timeouts
        # ``sock_read`` bounds the wait for the first byte and the idle time between chunks.
        self._timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.first_byte)
        self._observe_decision = metrics.decision_latency.observe
        self._observe_ratio = metrics.prefix_match_ratio.observe
        self._observe_ttft = metrics.ttft.observe
        self._requests = metrics.requests
        # hot-path caches: parsed upstream URLs and counter children (``labels()`` hashes and locks per call)
        self._urls: dict[tuple[str, str], URL] = {}
        self._counters: dict[tuple[str, str], Callable[[], None]] = {}

    # ------------------------------------------------------------------------------------------- routes

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/completions", self.generate)
        app.router.add_post("/v1/chat/completions", self.generate)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)

    async def models(self, request: web.Request) -> web.StreamResponse:
        try:
            self._auth(request)
        except KserveLlmdError as exc:
            return error_response(exc)
        return json_response({"object": "list", "data": self._registry.model_cards()})

    async def health(self, request: web.Request) -> web.StreamResponse:
        healthy = self._registry.healthy_count()
        if healthy == 0:
            return error_response(NoEndpointError("no healthy endpoint"))
        return json_response({"status": "ok", "healthy_endpoints": healthy, "endpoints": len(self._registry)})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"})

    # ------------------------------------------------------------------------------------------- generate

    async def generate(self, request: web.Request) -> web.StreamResponse:
        try:
            self._auth(request)
            raw = await read_body(request, self._max_body)
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
        except KserveLlmdError as exc:
            return error_response(exc)
        targets = [primary.target, *primary.fallbacks[: self._max_attempts - 1]]
        if self._pd is not None:  # P/D: the decision, then prefill + decode (or this same forward)
            return await self._pd.handle(request, ctx, raw, result, targets, self._forward, self._upstream_headers,
                                         self._max_attempts)
        return await self._forward(request, ctx, raw, targets)

    def authorize(self, request: web.Request) -> None:
        """Raise ``AuthenticationError`` unless the request carries the API key (when one is set)."""
        self._auth(request)

    def _auth(self, request: web.Request) -> None:
        if self._api_key is None:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._api_key):
            raise AuthenticationError("missing or invalid API key")

    async def _context(self, request: web.Request, body: dict[str, object], raw: bytes
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
            request_id=headers.get(REQUEST_ID) or os.urandom(16).hex(),
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

    # ------------------------------------------------------------------------------------------- forwarding

    def _upstream_headers(self, request: web.Request, request_id: str) -> CIMultiDict[str]:
        out: CIMultiDict[str] = CIMultiDict()
        drop_auth = self._api_key is not None
        for key, value in request.headers.items():
            low = key.lower()
            if low in _DROP or (drop_auth and low == "authorization"):
                continue
            out.add(key, value)
        out[REQUEST_ID] = request_id
        return out

    async def _forward(
        self, request: web.Request, ctx: RequestContext, raw: bytes, targets: Sequence[Endpoint]
    ) -> web.StreamResponse:
        headers = self._upstream_headers(request, ctx.request_id)
        tokens = ctx.prompt_tokens + ctx.max_tokens
        failures = []
        for attempt, ep in enumerate(targets):
            if attempt:
                self._metrics.retries.inc()
            ep.inflight_requests += 1
            ep.inflight_tokens += tokens
            try:
                return await self._attempt(request, ctx, ep, raw, headers)
            except _ConnectFailed as exc:
                self._count(ep.id, "connect_failed")
                if exc.refused:
                    self._mark_down(ep, "connect failed")
                failures.append(f"{ep.id}: {exc}")
                log.warning("request %s: cannot reach %s (%s)", ctx.request_id, ep.id, exc)
            finally:
                ep.inflight_requests -= 1
                ep.inflight_tokens -= tokens
        return error_response(UpstreamFailedError(
            f"no endpoint could be reached after {len(targets)} attempt(s): {'; '.join(failures)}"
        ))

    async def _attempt(
        self, request: web.Request, ctx: RequestContext, ep: Endpoint, raw: bytes, headers: CIMultiDict[str]
    ) -> web.StreamResponse:
        sent = time.perf_counter()
        try:
            resp = await self._session().post(self._url(ep, ctx.path), data=raw, headers=headers,
                                              timeout=self._timeout)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise _ConnectFailed(repr(exc), refused=True) from None
        except aiohttp.ServerDisconnectedError as exc:
            raise _ConnectFailed(repr(exc), refused=False) from None
        except TimeoutError:
            self._count(ep.id, "timeout")
            return error_response(UpstreamTimeoutError(f"endpoint {ep.id} did not answer in time"))
        except aiohttp.ClientError as exc:
            self._count(ep.id, "upstream_failed")
            return error_response(UpstreamFailedError(f"endpoint {ep.id} failed: {exc!r}"))
        try:
            if resp.status != 200:
                return await self._pass_error(ctx, ep, resp)
            return await self._stream(request, ctx, ep, resp, sent)
        finally:
            resp.close()  # a no-op for a fully read body's pooled connection; an abort otherwise

    async def _pass_error(self, ctx: RequestContext, ep: Endpoint, resp: aiohttp.ClientResponse) -> web.Response:
        limit = self._cfg.limits.max_error_body_bytes
        try:
            body = await resp.content.read(limit)
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        self._count(ep.id, "upstream_error")
        return web.Response(
            status=resp.status, body=body,
            headers={"Content-Type": resp.headers.get("Content-Type", JSON_CONTENT_TYPE), REQUEST_ID: ctx.request_id},
        )

    async def _stream(
        self, request: web.Request, ctx: RequestContext, ep: Endpoint, resp: aiohttp.ClientResponse, sent: float
    ) -> web.StreamResponse:
        content_type = resp.headers.get("Content-Type", JSON_CONTENT_TYPE)
        sse = content_type.startswith("text/event-stream")
        length = resp.content_length
        if not sse and length is not None and length <= _WHOLE_BODY_BYTES:
            return await self._whole(ctx, ep, resp, sent)
        out = web.StreamResponse(status=200)
        if sse:
            out.headers.update(SSE_HEADERS)
        else:
            out.content_type = resp.content_type
        out.headers[REQUEST_ID] = ctx.request_id
        out.headers["X-Routed-To"] = ep.id
        # headers go out as soon as the engine's do (as vLLM's own server does), then every chunk as it comes
        await out.prepare(request)
        first = True
        try:
            async for chunk in resp.content.iter_any():
                if first:
                    self._observe_ttft(time.perf_counter() - sent)
                    first = False
                await out.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if isinstance(exc, aiohttp.ClientConnectionResetError):  # the CLIENT went away (write failed)
                self._count(ep.id, "client_disconnected")
                return out
            if isinstance(exc, TimeoutError):  # silent too long between chunks: a hang, not a death
                self._count(ep.id, "timeout")
            else:  # reset, closed or garbled: the engine died (or is dying): take it out now (passive health)
                self._count(ep.id, "upstream_died")
                self._mark_down(ep, "died mid-stream")
            log.warning("request %s: %s failed mid-stream: %r", ctx.request_id, ep.id, exc)
            if sse:  # tell an SSE client in-band, as vLLM does for errors during streaming
                err = UpstreamFailedError(f"endpoint {ep.id} failed mid-stream: {exc!r}").to_openai()
                with contextlib.suppress(aiohttp.ClientConnectionResetError):
                    await out.write(b"data: " + orjson.dumps(err) + b"\n\n")
                    await out.write_eof()
            elif request.transport is not None:
                request.transport.close()  # a truncated JSON body must not look complete
            return out
        try:
            await out.write_eof()
        except aiohttp.ClientConnectionResetError:  # the client left after the last chunk (e.g. right after [DONE])
            self._count(ep.id, "client_disconnected")
            return out
        self._count(ep.id, "ok")
        return out

    async def _whole(
        self, ctx: RequestContext, ep: Endpoint, resp: aiohttp.ClientResponse, sent: float
    ) -> web.StreamResponse:
        """A non-streaming answer of known, bounded size: read whole and sent in one write with its Content-Length
        (no chunked framing, one send). Nothing has reached the client yet, so an engine that dies or stalls in the
        middle of the body becomes a clean OpenAI-shaped 502 / 504 instead of a cut connection."""
        try:
            body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("request %s: %s failed mid-response: %r", ctx.request_id, ep.id, exc)
            if isinstance(exc, TimeoutError):
                self._count(ep.id, "timeout")
                return error_response(UpstreamTimeoutError(f"endpoint {ep.id} stalled in the middle of its answer"))
            self._count(ep.id, "upstream_died")
            self._mark_down(ep, "died mid-response")
            return error_response(UpstreamFailedError(f"endpoint {ep.id} failed mid-response: {exc!r}"))
        self._observe_ttft(time.perf_counter() - sent)
        self._count(ep.id, "ok")
        return web.Response(body=body, content_type=resp.content_type,
                            headers={REQUEST_ID: ctx.request_id, "X-Routed-To": ep.id})

    # ------------------------------------------------------------------------------------------- hot-path helpers

    def _url(self, ep: Endpoint, path: str) -> URL:
        """The upstream URL, parsed once per (endpoint URL, path) instead of per request."""
        key = (ep.url, path)
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) > 4096:  # endpoints come and go with discovery: never grow without bound
                self._urls.clear()
            url = self._urls[key] = URL(ep.url + path)
        return url

    def _count(self, ep_id: str, outcome: str) -> None:
        key = (ep_id, outcome)
        inc = self._counters.get(key)
        if inc is None:
            if len(self._counters) > 4096:
                self._counters.clear()
            inc = self._counters[key] = self._requests.labels(ep_id, outcome).inc
        inc()

    def _mark_down(self, ep: Endpoint, why: str) -> None:
        """Passive health: stop sending to ``ep`` now; the scraper marks it healthy once a probe succeeds."""
        if ep.healthy:
            ep.healthy = False
            log.warning("endpoint %s marked UNHEALTHY: %s", ep.id, why)
