"""The router's HTTP/1.1 server: one asyncio protocol per client connection, requests parsed in C by httptools.

Why not aiohttp's server: under 200 streams the router's loop runs in bursts (every engine step hands a chunk to
every stream at once), and aiohttp on Python 3.11 starts two tasks per request (the connection's reader wakes, then
the handler's own task), each waiting behind the rest of a burst. Measured with ``benchmarks/router_overhead.py``
(ITL 25 ms, timestamps added by hand for one run): a request's bytes arriving → its handler starting took 0.50 ms
p50. With this server the router's CPU per request fell from 86 to 57 µs (the README has the latency runs, which
vary with the machine as much as with the server). Here a request is handled from the
read callback that completes it: a handler that can answer at once (errors, ``/health``) answers there; one that
must wait (a forward) starts as ONE task, which the client's disconnect cancels.

    data_received ─▶ httptools ─▶ Request (method, path, headers, body; limits enforced while parsing)
                  ─▶ routes[(method, path)](request) ─▶ Response, written now
                                                     └▶ coroutine ─▶ one task ─▶ Response, or a Stream it wrote
    one request at a time per connection: pipelined requests wait in order (reading paused meanwhile)

Slow and greedy clients: a request head must arrive whole within ``header_timeout`` of its first byte (else 408),
silence is cut after ``idle_timeout``, and at most ``max_connections`` clients are served at once. The next
``max_connections`` are answered 503 at once and closed; beyond twice the cap a connection is reset unanswered, so the
router's file descriptors stay bounded (its upstream connections need theirs).

What it does not do: TLS (the router sits behind a Service or a gateway), HTTP/2, upgrades (refused with 400).
Errors become bodies only through ``kserve_llmd.http.error_body``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Coroutine
from typing import Any, cast

import httptools

from kserve_llmd.errors import (
    BodyTooLargeError,
    HeadersTooLargeError,
    InvalidRequestError,
    KserveLlmdError,
    OverloadedError,
    RequestTimeoutError,
)
from kserve_llmd.router.messages import Request, Response, Routes, Stream

log = logging.getLogger(__name__)

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LINGER = 5.0  # seconds a refused client's remaining bytes are read and dropped before the close (nginx: 5 s)


class ServerLimits:
    __slots__ = ("first_check", "header_timeout", "idle_timeout", "max_body", "max_connections", "max_field",
                 "max_head")

    def __init__(self, *, max_body: int, max_field: int, idle_timeout: float, header_timeout: float,
                 max_connections: int) -> None:
        self.max_body = max_body
        self.max_field = max_field  # one header line, or the URL
        self.max_head = 4 * max_field  # the whole head
        #: The longest silence from a client the server owes nothing: between requests, or inside one's head or body.
        self.idle_timeout = idle_timeout
        #: A request head must be whole this long after its first byte (like nginx's client_header_timeout).
        self.header_timeout = header_timeout
        #: Client connections served at once.
        self.max_connections = max_connections
        self.first_check = min(idle_timeout, header_timeout)  # a new connection's timer: whichever can fall first


class _Reject(Exception):
    def __init__(self, error: KserveLlmdError) -> None:
        super().__init__(error.message)
        self.error = error


class _Conn(asyncio.Protocol):
    """One client connection: parses, queues, dispatches one request at a time, writes the answers in order.

    States: idle (silence is timed from the last read), busy (a handler's task runs; no timer: answers may
    take minutes), failed (an unparseable or refused request: what came before it is answered, then its error, then
    the connection closes)."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._limits = server.limits
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self._ready: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._paused = False
        self._failed: KserveLlmdError | None = None
        self._in_head = False
        self._in_message = False
        self._head_fed = 0  # bytes fed while a head was incomplete (httptools holds a header line until its CRLF)
        self._continue = False  # a 100 Continue owed once the answers before it are out
        self._drained: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._idle: asyncio.TimerHandle | None = None
        self._idle_since = 0.0
        self._head_since = 0.0
        self._new_message()

    def _new_message(self) -> None:
        self._url = b""
        self._raw: list[tuple[bytes, bytes]] = []
        self._headers: dict[str, str] = {}  # lower-case names, built as the headers arrive
        self._head_size = 0
        self._body: list[bytes] = []
        self._body_size = 0

    # ------------------------------------------------------------------------------------------- asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        server = self._server
        open_now = len(server.connections)
        if open_now >= self._limits.max_connections:
            if open_now >= 2 * self._limits.max_connections:
                server.refused("reset")
                self.transport.abort()
                return
            server.refused("503")
            server.connections.add(self)
            self._failed = OverloadedError(f"the router is serving its limit of {self._limits.max_connections} "
                                           "connections; retry shortly")
            self._next()  # answers 503 before the client has asked, then lingers
            return
        server.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._cancel_idle()
        self._ready.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the client left: its handler stops, and with it the upstream request
        self.resume_writing()  # a drain() waiting sees the transport closing and raises

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def drain(self) -> None:
        if self._drained is not None:
            await asyncio.shield(self._drained)
        if self.transport.is_closing():
            raise ConnectionResetError("client connection lost")

    def data_received(self, data: bytes) -> None:
        if self._failed is not None:
            return
        try:
            self._parser.feed_data(data)
            if self._in_head:
                self._head_fed += len(data)
                if self._head_fed > self._limits.max_head:
                    raise _Reject(HeadersTooLargeError(f"request head is over the limit of {self._limits.max_head} "
                                                       "bytes"))
        except _Reject as exc:
            self._fail(exc.error)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _Reject):
                self._fail(exc.__context__.error)
            else:
                log.exception("HTTP parser callback failed")
                self._fail(InvalidRequestError("malformed HTTP request"))
        except httptools.HttpParserUpgrade:
            if self._ready:
                self._ready.pop()  # the upgrade request itself: refused, not answered as if plain HTTP
            self._fail(InvalidRequestError("protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:
            self._fail(InvalidRequestError(f"malformed HTTP request: {exc}"))
        if self._busy:
            return
        if self._ready or self._failed is not None:
            self._next()
        else:
            self._arm_idle()  # inside a request's head or body, or between requests: silence is timed

    # ------------------------------------------------------------------------------------------- httptools

    def on_message_begin(self) -> None:
        self._in_message = self._in_head = True
        self._head_fed = 0
        self._head_since = self._loop.time()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if len(self._url) > self._limits.max_field:
            raise _Reject(HeadersTooLargeError(f"request URL is over the limit of {self._limits.max_field} bytes"))

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        self._head_size += size + 4
        if size > self._limits.max_field or self._head_size > self._limits.max_head:
            raise _Reject(HeadersTooLargeError(f"request headers are over the limit of {self._limits.max_field} "
                                               f"bytes per line, {self._limits.max_head} in all"))
        self._raw.append((name, value))
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._in_head = False
        length = self._headers.get("content-length", "").strip()
        if length.isdigit() and int(length) > self._limits.max_body:
            raise _Reject(BodyTooLargeError(f"request body of {int(length)} bytes is over the limit of "
                                            f"{self._limits.max_body} bytes"))
        expect = self._headers.get("expect", "").strip().lower() == "100-continue"
        if expect and self._parser.get_http_version() == "1.1":
            if self._busy or self._ready:  # now it would cut into an earlier answer: after the answers before it
                self._continue = True
            else:
                self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._limits.max_body:
            raise _Reject(BodyTooLargeError(f"request body is over the limit of {self._limits.max_body} bytes"))
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        parsed = httptools.parse_url(self._url)
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._ready.append(Request(self, parser.get_method().decode("ascii"), parsed.path.decode("latin-1"),
                                   (parsed.query or b"").decode("latin-1"), self._raw, self._headers, body,
                                   parser.should_keep_alive(), parser.get_http_version() == "1.1"))
        self._new_message()
        self._continue = False
        self._in_message = False
        if len(self._ready) > 1 and not self._paused:  # pipelined behind a running one: stop reading for now
            self._paused = True
            self.transport.pause_reading()

    # ------------------------------------------------------------------------------------------- dispatch

    def _next(self) -> None:
        """Answer what is queued, in order, until a handler must wait (then its task calls back here)."""
        while self._ready and not self._busy and not self.transport.is_closing():
            request = self._ready.popleft()
            found = self._server.routes.find(request)
            try:
                result = found if isinstance(found, Response) else found(request)
            except Exception:  # a handler bug must not take the connection's other requests with it
                log.exception("handler for %s %s failed", request.method, request.path)
                result = Response.error(KserveLlmdError("internal error"))
            if isinstance(result, Response):
                self._write(request, result)
                continue
            self._busy = True  # (the idle timer, if it fires meanwhile, lets a busy connection be)
            self._task = asyncio.get_running_loop().create_task(self._run(request, cast(Coroutine[Any, Any, Any],
                                                                                         result)))
        if self._busy or self.transport.is_closing():
            return
        if self._failed is not None:
            self.transport.write(Response.error(self._failed).encode(keep_alive=False))
            self._linger()
            return
        if self._continue:
            self._continue = False
            self.transport.write(_CONTINUE)
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
        self._arm_idle()

    async def _run(self, request: Request, pending: Coroutine[Any, Any, object]) -> None:
        try:
            result = await pending
        except asyncio.CancelledError:
            return  # the client left (connection_lost): nothing to answer
        except Exception:
            log.exception("handler for %s %s failed", request.method, request.path)
            result = Response.error(KserveLlmdError("internal error"))
        finally:
            self._task = None
            self._busy = False
        if isinstance(result, Stream):
            if not result.ended or not request.keep_alive:  # given up on: close (or its rest would be misread)
                self.transport.close()
        else:
            if not isinstance(result, Response):
                log.error("handler for %s %s returned %r", request.method, request.path, type(result).__name__)
                result = Response.error(KserveLlmdError("internal error"))
            self._write(request, result)
        self._next()

    def _write(self, request: Request, response: Response) -> None:
        keep = request.keep_alive and not self._server.closing
        if not self.transport.is_closing():
            self.transport.write(response.encode(keep))
            if not keep:
                self.transport.close()

    def _fail(self, error: KserveLlmdError) -> None:
        """A request that cannot be parsed or taken: what follows it is dropped; ``_next`` answers the requests
        before it, then this one, then lingers."""
        log.info("refused a request: %s", error.message)
        self._failed = error

    def _linger(self) -> None:
        """After a refusal: our side is shut once the answer is written, and what the client still sends (the rest of
        a body it writes before reading, e.g. after a 413 on its Content-Length) is read and dropped until it stops
        or for ``LINGER`` seconds. Closing at once, with its bytes unread, would make the kernel reset the connection,
        and a client still writing would see a broken pipe instead of the answer. (A client's EOF closes the
        connection at any time, as a disconnect: asyncio's default, which cancels a handler still running.)"""
        transport = self.transport
        if transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
        if self._paused:
            self._paused = False
            transport.resume_reading()
        self._cancel_idle()
        self._idle = self._loop.call_later(LINGER, transport.close)

    # ------------------------------------------------------------------------------------------- idle

    def _arm_idle(self) -> None:
        """Silence is timed from now. One timer per connection stays pending and re-arms itself when it fires
        early, so the per-request cost is a clock read, not a timer."""
        self._idle_since = self._loop.time()
        if self._idle is None:
            self._idle = self._loop.call_at(self._idle_since + self._limits.first_check, self._on_idle)

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _on_idle(self) -> None:
        self._idle = None
        if self._busy or self._failed is not None:  # busy: re-armed when it answers; failed: lingering
            return
        now = self._loop.time()
        deadline = self._idle_since + self._limits.idle_timeout
        if self._in_head:
            deadline = min(deadline, self._head_since + self._limits.header_timeout)
        if now < deadline:
            self._idle = self._loop.call_at(deadline, self._on_idle)
        elif self._in_message:  # a request begun, then too slow or stalled: told why, then closed
            slow_head = self._in_head and now >= self._head_since + self._limits.header_timeout
            self._fail(RequestTimeoutError(
                f"the request head did not arrive within {self._limits.header_timeout:g} s" if slow_head
                else f"the client sent nothing for {self._limits.idle_timeout:g} s in the middle of a request"))
            self._next()
        else:  # silence between requests: a kept-alive connection nobody uses
            self.transport.close()

    def close_if_idle(self) -> bool:
        if self._busy or self._ready:
            return False
        self.transport.close()
        return True


class HttpServer:
    """``await HttpServer(routes, limits).start(host, port, backlog)``; ``await aclose(grace)``."""

    def __init__(self, routes: Routes, limits: ServerLimits) -> None:
        self.routes = routes
        self.limits = limits
        self.connections: set[_Conn] = set()
        self.closing = False
        self._server: asyncio.base_events.Server | None = None
        #: Connections turned away at the cap, by answer ("503" or "reset").
        self.refusals: dict[str, int] = {"503": 0, "reset": 0}
        self._warned_at = -1e9

    def refused(self, answer: str) -> None:
        self.refusals[answer] += 1
        now = asyncio.get_running_loop().time()
        if now - self._warned_at >= 10.0:  # one line per 10 s while it lasts, not one per connection
            self._warned_at = now
            log.warning("at the cap of %d client connections: turning new ones away (%d answered 503, %d reset so "
                        "far)", self.limits.max_connections, self.refusals["503"], self.refusals["reset"])

    async def start(self, host: str, port: int, backlog: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = cast(Any, await loop.create_server(lambda: _Conn(self), host, port, backlog=backlog))
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def aclose(self, grace: float = 60.0) -> None:
        """Stop listening; let requests in flight finish for up to ``grace`` seconds, then cancel them."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        busy = [c for c in list(self.connections) if not c.close_if_idle()]
        deadline = asyncio.get_running_loop().time() + grace
        while busy and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
            busy = [c for c in busy if not c.close_if_idle()]
        for conn in busy:
            conn.transport.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
