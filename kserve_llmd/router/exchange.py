"""One HTTP/1.1 request/response on one upstream connection, parsed by httptools, for ``upstream.UpstreamPool``.

``_Connection`` is the asyncio protocol: it parses the engine's answer in C and calls its current ``Exchange``
back with the head, each body chunk and the end. ``Exchange`` is what the proxy holds: it awaits the head and the
end, and either gathers the body (``read``) or has every chunk handed to a sink from the read callback (``relay``).
The failures are typed here for the proxy (see ``upstream.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import httptools


class UpstreamError(Exception):
    """Base of the upstream failures below."""


class UpstreamConnectError(UpstreamError):
    """Nothing was answered: safe to try another endpoint. ``refused``: no connection could be made at all."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


class UpstreamTimeout(UpstreamError):
    """No byte from the engine for the idle timeout, or the exchange took longer than the total timeout."""


class UpstreamBroken(UpstreamError):
    """The engine's answer broke off (connection lost or unparseable) after it started answering."""


class Exchange:
    """One request/response on one connection. Created by ``UpstreamPool.request``."""

    def __init__(self, conn: _Connection, loop: asyncio.AbstractEventLoop, clock: Callable[[], float]) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}  # lower-case names; a repeated header keeps its last value
        self.content_length: int | None = None
        self.chunked = False
        #: ``clock()`` when the first BODY byte arrived (the first token of a stream), or None.
        self.first_byte_at: float | None = None
        #: Sent on a pooled keep-alive connection (which the engine may have closed just as it was reused).
        self.reused = False
        #: Called once, from the read callback, when the first body byte arrives.
        self.on_first_byte: Callable[[], None] | None = None
        self._conn = conn
        self._loop = loop
        self._clock = clock
        self._head: asyncio.Future[None] = loop.create_future()
        self._done: asyncio.Future[None] = loop.create_future()
        self._sink: Callable[[bytes], None] | None = None
        self._early: list[bytes] = []  # body parts parsed before a sink was set (or gathered by ``read``)
        self._limit = -1  # ``read``: gather at most this many bytes (-1: no gathering)
        self._size = 0
        self._finished = False

    # ---------------------------------------------------------------------------------------- caller side

    async def head(self) -> None:
        """Wait for the status line and headers (raises the typed failures)."""
        await self._head

    def relay(self, sink: Callable[[bytes], None]) -> None:
        """From now on, hand every body chunk to ``sink`` from the read callback (earlier chunks first, now)."""
        early, self._early = self._early, []
        self._sink = sink
        for part in early:
            sink(part)

    async def read(self, limit: int) -> bytes:
        """The body, gathered: at most ``limit`` bytes kept (the rest is read and dropped)."""
        self._limit = limit
        kept = b"".join(self._early)[:limit]
        self._early = [kept] if kept else []
        self._size = len(kept)
        await self._done
        return b"".join(self._early)

    async def done(self) -> None:
        """Wait until the answer is complete (raises the typed failures)."""
        await self._done

    def pause(self) -> None:
        """Stop reading from the engine (the client is slow); ``resume`` reads again."""
        self._conn.pause()

    def resume(self) -> None:
        self._conn.resume()

    def abort(self, exc: Exception) -> None:
        """Give up on this answer now (e.g. the client went away): the connection is aborted and the waiters get
        ``exc``. Safe to call from inside a sink."""
        self._sink = None
        if not self._finished:
            self._finished = True
            self._conn.abort()
        _fail_futures(exc, self._head, self._done)

    def close(self) -> None:
        """Let go: a finished exchange's connection is already back in the pool; an unfinished one is aborted."""
        self._sink = None
        if not self._finished:
            self._finished = True
            self._conn.abort()

    # ---------------------------------------------------------------------------------------- connection side

    def _on_head(self, status: int, headers: dict[bytes, bytes]) -> None:
        self.status = status
        self.headers = headers
        length = headers.get(b"content-length")
        self.content_length = int(length) if length is not None and length.isdigit() else None
        self.chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if not self._head.done():
            self._head.set_result(None)

    def _on_body(self, data: bytes) -> None:
        if self.first_byte_at is None:
            self.first_byte_at = self._clock()
            if self.on_first_byte is not None:
                self.on_first_byte()
        sink = self._sink
        if sink is not None:
            sink(data)
        elif self._limit < 0:
            self._early.append(data)
        elif self._size < self._limit:
            part = data[: self._limit - self._size]
            self._early.append(part)
            self._size += len(part)

    def _on_complete(self) -> None:
        self._finished = True
        self._sink = None  # a sink usually refers back to this exchange: no reference cycle left for the GC
        if not self._done.done():
            self._done.set_result(None)

    def _on_failure(self, exc: UpstreamError) -> None:
        self._finished = True
        self._sink = None
        _fail_futures(exc, self._head, self._done)


def _fail_futures(exc: Exception, *futures: asyncio.Future[None]) -> None:
    """Set ``exc`` on the pending ``futures``. The caller awaits one or the other (the head, then the end), never
    necessarily both: each is marked retrieved so asyncio does not log the other; awaiting it still raises."""
    for fut in futures:
        if not fut.done():
            fut.set_exception(exc)
            fut.exception()


class _Connection(asyncio.Protocol):
    """One keep-alive connection: parses responses with httptools and feeds the current ``Exchange``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: object,
                 release: Callable[[_Connection], None]) -> None:
        self.loop = loop
        self.loop_time = loop.time
        self.origin = origin  # the pool's key
        self._release = release
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._headers: dict[bytes, bytes] = {}
        self._answered = False  # any byte of the current answer seen
        self._head_seen = False
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._idle = 0.0

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:  # bytes nobody asked for: the connection is not usable any more
            self.abort()
            return
        self._answered = True
        self._last_read = self.loop_time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamBroken("the engine switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamBroken(f"unparseable answer from the engine: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        ex = self.exchange
        if ex is None:
            return
        if self._head_seen and not self._framed():  # a body delimited by the end of the connection: complete
            self._finish()
            return
        if not self._answered:
            self._fail(UpstreamConnectError(f"connection closed before any answer ({exc!r})", refused=False))
        else:
            self._fail(UpstreamBroken(f"connection lost mid-answer ({exc!r})"))

    # ------------------------------------------------------------------ httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self._head_seen = True
        headers, self._headers = self._headers, {}
        status = self._parser.get_status_code()
        if status < 200:  # 1xx: an interim answer, the real head follows
            self._head_seen = False
            return
        ex = self.exchange
        if ex is not None:  # None: a sink gave up on this answer earlier in the same read
            ex._on_head(status, headers)

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        if ex is not None:
            ex._on_body(body)

    def on_message_complete(self) -> None:
        if self._head_seen:
            self._finish()

    # ------------------------------------------------------------------ exchange lifecycle

    def start(self, ex: Exchange, payload: bytes, idle_timeout: float, total_timeout: float) -> None:
        assert self.transport is not None
        self.exchange = ex
        self._answered = self._head_seen = False
        now = self.loop_time()
        self._last_read = now
        self._deadline = now + total_timeout
        self._idle = idle_timeout
        self._arm(min(idle_timeout, total_timeout))
        self.transport.write(payload)

    def _framed(self) -> bool:
        ex = self.exchange
        return ex is not None and (ex.chunked or ex.content_length is not None)

    def _finish(self) -> None:
        ex, self.exchange = self.exchange, None
        self._cancel_timer()
        if ex is None:
            return
        keep = not self.closed and self._parser.should_keep_alive()
        ex._on_complete()
        if keep:
            self._release(self)
        else:
            self.abort()

    def _fail(self, exc: UpstreamError) -> None:
        ex, self.exchange = self.exchange, None
        self._cancel_timer()
        self.abort()
        if ex is not None:
            ex._on_failure(exc)

    def abort(self) -> None:
        self.closed = True
        self.exchange = None
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # ------------------------------------------------------------------ timeouts: one timer, re-armed lazily

    def _arm(self, delay: float) -> None:
        self._timer = self.loop.call_later(delay, self._check_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_timeout(self) -> None:
        """Chunks only stamp ``_last_read``; the timer wakes at the earliest possible expiry and re-arms itself."""
        self._timer = None
        if self.exchange is None:
            return
        now = self.loop_time()
        if now >= self._deadline:
            self._fail(UpstreamTimeout("the exchange exceeded its total timeout"))
        elif now - self._last_read >= self._idle:
            what = "answered nothing" if not self._answered else "went silent"
            self._fail(UpstreamTimeout(f"the engine {what} for {self._idle:g} s"))
        else:
            self._arm(max(0.001, min(self._last_read + self._idle, self._deadline) - now))
