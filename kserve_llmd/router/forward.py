"""Forwarding one routed request: try the picked endpoints in order, then pass the engine's answer through.

    Forwarder.forward(request, ctx, raw, targets)
        for each endpoint (until one answers): in-flight += ; POST the ORIGINAL bytes ; in-flight -= (finally)
        ─▶ non-200: status + body (cut to a limit) passed through
        ─▶ 200, non-streamed body of known size ≤ 1 MiB: read whole, sent in one write with its Content-Length
        ─▶ 200 otherwise: the head goes out at once, then every body chunk is written to the client's socket from
           the upstream connection's read callback (``upstream.py``): no buffering, no task wake-up per chunk

Retries: only a connect failure (refused, connect timeout, a pooled connection dropped before any answer) moves on
to the next endpoint; nothing is retried once the engine answered, so nothing is retried after bytes reached the
client. A client that disconnects cancels the handler (``server.py`` cancels its task), and ``Exchange.close``
aborts the upstream connection: the engine sees the abort and frees the request. A slow client pauses reading from
the engine until its socket drains (the engine's own flow control does the rest).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import orjson
from multidict import CIMultiDict

from kserve_llmd.errors import UpstreamFailedError, UpstreamTimeoutError
from kserve_llmd.http import JSON_CONTENT_TYPE, SSE_HEADERS
from kserve_llmd.router.endpoints import PrefillHold
from kserve_llmd.router.interfaces import Endpoint, RequestContext
from kserve_llmd.router.messages import CLIENT_CLOSED, Request, Response, Stream
from kserve_llmd.router.metrics import RouterMetrics
from kserve_llmd.router.upstream import (
    Exchange,
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamError,
    UpstreamPool,
    UpstreamTimeout,
)

log = logging.getLogger(__name__)

REQUEST_ID = "X-Request-Id"
REQUEST_ID_KEY = REQUEST_ID.lower()  # as ``Request.headers`` keys it
ROUTED_TO = "X-Routed-To"  # answer header: the id of the endpoint that served the request
# Not forwarded upstream: hop-by-hop headers, the ones the upstream client writes itself, and compression (the
# bytes are passed through as they are).
_DROP = frozenset(
    h.lower() for h in (
        "Host", "Content-Length", "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE",
        "Trailer", "Transfer-Encoding", "Upgrade", "Accept-Encoding", REQUEST_ID, "x-prefiller-host-port",
    )
)
_DROP_RAW = frozenset(h.encode() for h in _DROP)
#: Non-streaming answers up to this size (with a Content-Length) are read whole and sent in one write.
WHOLE_BODY_BYTES = 1024 * 1024
#: A client socket holding more than this many unsent bytes pauses reading from the engine.
_CLIENT_HIGH_WATER = 256 * 1024


class ClientGone(Exception):
    """The client's connection closed while its answer was being relayed."""


class Forwarder:
    def __init__(
        self,
        pool: Callable[[], UpstreamPool],
        metrics: RouterMetrics,
        *,
        drop_auth: bool,
        max_error_body: int,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._drop_auth = drop_auth
        self._max_error_body = max_error_body
        self._observe_ttft = metrics.ttft.observe
        self._requests = metrics.requests
        self._counters: dict[tuple[str, str], Callable[[], None]] = {}

    # ------------------------------------------------------------------------------------------- headers

    def raw_headers(self, request: Request, request_id: str) -> bytes:
        """The client's headers for the engine, as ``Name: value\\r\\n`` lines (the bytes as received)."""
        drop_auth = self._drop_auth
        lines = []
        for name, value in request.raw_headers:
            low = name.lower()
            if low in _DROP_RAW or (drop_auth and low == b"authorization"):
                continue
            lines.append(b"%b: %b\r\n" % (name, value))
        lines.append(b"X-Request-Id: %b\r\n" % request_id.encode())
        return b"".join(lines)

    def headers(self, request: Request, request_id: str) -> CIMultiDict[str]:
        """The same headers for an ``aiohttp`` client request (the P/D prefill step)."""
        out: CIMultiDict[str] = CIMultiDict()
        for name, value in request.raw_headers:
            low = name.lower()
            if low in _DROP_RAW or (self._drop_auth and low == b"authorization"):
                continue
            out.add(name.decode("latin-1"), value.decode("latin-1"))
        out[REQUEST_ID] = request_id
        return out

    # ------------------------------------------------------------------------------------------- forwarding

    async def forward(
        self, request: Request, ctx: RequestContext, raw: bytes, targets: Sequence[Endpoint]
    ) -> Response | Stream:
        headers = self.raw_headers(request, ctx.request_id)
        tokens = ctx.prompt_tokens + ctx.max_tokens
        failures = []
        for attempt, ep in enumerate(targets):
            if attempt:
                self._metrics.retries.inc()
            ep.inflight_requests += 1
            ep.inflight_tokens += tokens
            prefill = PrefillHold(ep, ctx)
            try:
                return await self._attempt(request, ctx, ep, raw, headers, prefill)
            except UpstreamConnectError as exc:
                self.count(ep.id, "connect_failed")
                if exc.refused:
                    self.mark_down(ep, "connect failed")
                failures.append(f"{ep.id}: {exc}")
                log.warning("request %s: cannot reach %s (%s)", ctx.request_id, ep.id, exc)
            finally:
                ep.inflight_requests -= 1
                ep.inflight_tokens -= tokens
                prefill.release()
        return Response.error(UpstreamFailedError(
            f"no endpoint could be reached after {len(targets)} attempt(s): {'; '.join(failures)}"
        ))

    async def _attempt(
        self, request: Request, ctx: RequestContext, ep: Endpoint, raw: bytes, headers: bytes, prefill: PrefillHold
    ) -> Response | Stream:
        pool = self._pool()
        sent = pool.loop_time()
        ex = await pool.request(ep.url, ctx.path, headers, raw)  # UpstreamConnectError: the caller moves on
        ex.on_first_byte = prefill.release
        try:
            try:
                await ex.head()
            except UpstreamConnectError:
                if not ex.reused:
                    raise
                # a keep-alive connection the engine closed just as it was reused: once more, on a new connection
                ex.close()
                ex = await pool.request(ep.url, ctx.path, headers, raw, fresh=True)
                ex.on_first_byte = prefill.release
                await ex.head()
        except UpstreamTimeout:
            self.count(ep.id, "timeout")
            return Response.error(UpstreamTimeoutError(f"endpoint {ep.id} did not answer in time"))
        except UpstreamBroken as exc:
            self.count(ep.id, "upstream_failed")
            return Response.error(UpstreamFailedError(f"endpoint {ep.id} failed: {exc}"))
        finally:
            if ex.status == 0:  # no head: nothing more will be read from this exchange
                ex.close()
        try:
            if ex.status != 200:
                return await self._pass_error(ctx, ep, ex)
            content_type = ex.headers.get(b"content-type", b"").decode("latin-1") or JSON_CONTENT_TYPE
            sse = content_type.startswith("text/event-stream")
            if not sse and ex.content_length is not None and ex.content_length <= WHOLE_BODY_BYTES:
                return await self._whole(ctx, ep, ex, content_type, sent)
            return await self._stream(request, ctx, ep, ex, content_type, sse, sent)
        finally:
            ex.close()  # a no-op once the answer is complete (its connection is back in the pool); an abort otherwise

    async def _pass_error(self, ctx: RequestContext, ep: Endpoint, ex: Exchange) -> Response:
        try:
            body = await ex.read(self._max_error_body)
        except UpstreamError:
            body = b""
        self.count(ep.id, "upstream_error")
        content_type = ex.headers.get(b"content-type", b"").decode("latin-1") or JSON_CONTENT_TYPE
        return Response(body, ex.status, {"Content-Type": content_type, REQUEST_ID: ctx.request_id})

    async def _whole(
        self, ctx: RequestContext, ep: Endpoint, ex: Exchange, content_type: str, sent: float
    ) -> Response:
        """A non-streaming answer of known, bounded size: read whole and sent in one write with its Content-Length.
        Nothing has reached the client yet, so an engine that dies or stalls in the middle of the body becomes a
        clean OpenAI-shaped 502 / 504 instead of a cut connection."""
        try:
            body = await ex.read(WHOLE_BODY_BYTES)
        except UpstreamError as exc:
            log.warning("request %s: %s failed mid-response: %s", ctx.request_id, ep.id, exc)
            if isinstance(exc, UpstreamTimeout):
                self.count(ep.id, "timeout")
                return Response.error(UpstreamTimeoutError(f"endpoint {ep.id} stalled in the middle of its answer"))
            self.count(ep.id, "upstream_died")
            self.mark_down(ep, "died mid-response")
            return Response.error(UpstreamFailedError(f"endpoint {ep.id} failed mid-response: {exc}"))
        self._observe_ttft((ex.first_byte_at or self._pool().loop_time()) - sent)
        self.count(ep.id, "ok")
        return Response(body, 200, {"Content-Type": content_type, REQUEST_ID: ctx.request_id, ROUTED_TO: ep.id})

    async def _stream(
        self, request: Request, ctx: RequestContext, ep: Endpoint, ex: Exchange, content_type: str, sse: bool,
        sent: float,
    ) -> Response | Stream:
        if request.client_gone:
            self.count(ep.id, "client_disconnected")
            return Response(status=CLIENT_CLOSED)
        headers = dict(SSE_HEADERS) if sse else {"Content-Type": content_type}
        headers[REQUEST_ID] = ctx.request_id
        headers[ROUTED_TO] = ep.id
        # the head goes out as soon as the engine's does (as vLLM's own server does), then every chunk as it comes
        out = Stream(request, 200, headers)
        relay = _Relay(request, out, ex)
        ex.relay(relay)
        try:
            await ex.done()
        except ClientGone:
            self.count(ep.id, "client_disconnected")
            return out
        except UpstreamError as exc:
            if isinstance(exc, UpstreamTimeout):  # silent too long between chunks: a hang, not a death
                self.count(ep.id, "timeout")
            else:  # reset, closed or garbled: the engine died (or is dying): take it out now (passive health)
                self.count(ep.id, "upstream_died")
                self.mark_down(ep, "died mid-stream")
            log.warning("request %s: %s failed mid-stream: %s", ctx.request_id, ep.id, exc)
            if sse and not request.client_gone:  # tell an SSE client in-band, as vLLM does for errors mid-stream
                err = UpstreamFailedError(f"endpoint {ep.id} failed mid-stream: {exc}").to_openai()
                out.chunk(b"data: " + orjson.dumps(err) + b"\n\n")
                out.end()
            else:
                out.abort()  # a truncated body must not look complete
            return out
        finally:
            relay.stop()
        if ex.first_byte_at is not None:
            self._observe_ttft(ex.first_byte_at - sent)
        if request.client_gone:  # the client left after the last chunk (e.g. right after [DONE])
            self.count(ep.id, "client_disconnected")
            return out
        out.end()
        self.count(ep.id, "ok")
        return out

    # ------------------------------------------------------------------------------------------- helpers

    def count(self, ep_id: str, outcome: str) -> None:
        key = (ep_id, outcome)
        inc = self._counters.get(key)
        if inc is None:
            if len(self._counters) > 4096:  # endpoints come and go with discovery: never grow without bound
                self._counters.clear()
            inc = self._counters[key] = self._requests.labels(ep_id, outcome).inc
        inc()

    @staticmethod
    def mark_down(ep: Endpoint, why: str) -> None:
        """Passive health: stop sending to ``ep`` now; the scraper marks it healthy once a probe succeeds."""
        if ep.healthy:
            ep.healthy = False
            log.warning("endpoint %s marked UNHEALTHY: %s", ep.id, why)


class _Relay:
    """The sink of a streamed answer: each body chunk, chunk-framed, straight onto the client's socket."""

    __slots__ = ("_chunked", "_drain", "_ex", "_out", "_transport")

    def __init__(self, request: Request, out: Stream, ex: Exchange) -> None:
        self._transport = request.transport
        self._chunked = out.chunked
        self._out = out
        self._ex = ex
        self._drain: asyncio.Task[None] | None = None

    def __call__(self, data: bytes) -> None:
        transport = self._transport
        if transport.is_closing():
            self._ex.abort(ClientGone())
            return
        transport.write(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)
        if self._drain is None and transport.get_write_buffer_size() > _CLIENT_HIGH_WATER:
            self._ex.pause()
            self._drain = asyncio.get_running_loop().create_task(self._resume_when_drained())

    async def _resume_when_drained(self) -> None:
        try:
            await self._out.drain()
        except ConnectionError:
            self._ex.abort(ClientGone())
            return
        finally:
            self._drain = None
        self._ex.resume()

    def stop(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
