"""What the router's handlers see and return: ``Request``, ``Response``, ``Stream`` and the ``Routes`` table.

The HTTP/1.1 connection that parses requests and writes these lives in ``server.py``; a handler only reads a
``Request`` and returns a ``Response``, or writes a ``Stream`` and returns it. Errors become bodies only through
``kserve_llmd.http.error_body`` (``Response.error``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import unquote

import orjson

from kserve_llmd.errors import KserveLlmdError, MethodNotAllowedError, RouteNotFoundError
from kserve_llmd.http import JSON_CONTENT_TYPE, error_body


class Connection(Protocol):
    """The client connection a request came on (``server._Conn``)."""

    transport: asyncio.Transport

    async def drain(self) -> None:
        """Wait until the client has taken what was written (``ConnectionError`` if it left)."""
        ...


_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
            405: b"Method Not Allowed", 408: b"Request Timeout", 413: b"Payload Too Large",
            422: b"Unprocessable Entity", 429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
            499: b"Client Closed Request", 500: b"Internal Server Error", 502: b"Bad Gateway",
            503: b"Service Unavailable", 504: b"Gateway Timeout"}
CLIENT_CLOSED = 499  # nginx's status for a client that closed the connection (nobody reads it)


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %b\r\n" % (status, _REASONS.get(status, b"Status"))


class Request:
    """One parsed request. ``headers``: lower-case names (a repeated header keeps its last value); ``raw_headers``:
    the (name, value) pairs as received, for passing on; ``tail``: the rest of the path after a prefix route."""

    __slots__ = ("body", "conn", "headers", "http11", "keep_alive", "method", "path", "query", "raw_headers", "tail")

    def __init__(self, conn: Connection, method: str, path: str, query: str, raw_headers: list[tuple[bytes, bytes]],
                 headers: dict[str, str], body: bytes, keep_alive: bool, http11: bool) -> None:
        self.conn = conn
        self.keep_alive = keep_alive
        self.http11 = http11
        self.method = method
        self.path = path
        self.query = query
        self.raw_headers = raw_headers
        self.headers = headers
        self.body = body
        self.tail = ""

    @property
    def transport(self) -> asyncio.Transport:
        return self.conn.transport

    @property
    def client_gone(self) -> bool:
        return self.conn.transport.is_closing()


class Response:
    """A whole response: status, body, headers (``Content-Length`` and ``Connection`` are written here)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, body: bytes = b"", status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(orjson.dumps(obj), status, {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})})

    @classmethod
    def error(cls, exc: KserveLlmdError) -> Response:
        headers = {"Content-Type": JSON_CONTENT_TYPE}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return cls(error_body(exc), exc.status, headers)

    def encode(self, keep_alive: bool) -> bytes:
        head = [_status_line(self.status)]
        if self.headers:
            head.extend(b"%b: %b\r\n" % (k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items())
        head.append(b"Content-Length: %d\r\n%b\r\n" % (len(self.body), b"" if keep_alive else b"Connection: close\r\n"))
        return b"".join(head) + self.body


class Stream:
    """A response written as it goes: the head now, then ``chunk``s, then ``end`` (or ``abort``). Chunked for an
    HTTP/1.1 client; for HTTP/1.0 the body is raw and the connection's close ends it. A handler returns the stream
    once it has finished (or given up on) writing."""

    __slots__ = ("_conn", "chunked", "ended", "status")

    def __init__(self, request: Request, status: int, headers: dict[str, str]) -> None:
        self._conn = request.conn
        self.status = status
        self.ended = False
        self.chunked = request.http11
        lines = b"".join(b"%b: %b\r\n" % (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
        framing = b"Transfer-Encoding: chunked\r\n\r\n" if self.chunked else b"Connection: close\r\n\r\n"
        request.conn.transport.write(_status_line(status) + lines + framing)

    def chunk(self, data: bytes) -> None:
        """Write one body chunk now."""
        self._conn.transport.write(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)

    async def drain(self) -> None:
        """Wait until the client has taken what was written (``ConnectionError`` if it left)."""
        await self._conn.drain()

    def end(self) -> None:
        self.ended = True
        transport = self._conn.transport
        if not transport.is_closing():
            if self.chunked:
                transport.write(b"0\r\n\r\n")
            else:
                transport.close()

    def abort(self) -> None:
        """Close the connection without the terminating chunk: a cut body must not look complete."""
        self._conn.transport.close()


Handler = Callable[[Request], "Response | Awaitable[Response | Stream]"]


class Routes:
    """Explicit routes: ``add("POST", "/v1/completions", h)``; a path ending in ``/`` with ``prefix=True`` matches
    everything under it (the rest, URL-decoded, is ``request.tail``)."""

    def __init__(self) -> None:
        self._exact: dict[tuple[str, str], Handler] = {}
        self._prefix: list[tuple[str, str, Handler]] = []
        self._paths: dict[str, list[str]] = {}

    def add(self, method: str, path: str, handler: Handler, *, prefix: bool = False) -> None:
        if prefix:
            self._prefix.append((method, path, handler))
        else:
            self._exact[(method, path)] = handler
            self._paths.setdefault(path, []).append(method)

    def find(self, request: Request) -> Handler | Response:
        handler = self._exact.get((request.method, request.path))
        if handler is not None:
            return handler
        allowed = self._paths.get(request.path)
        for method, path, h in self._prefix:
            if request.path.startswith(path) and len(request.path) > len(path):
                if method == request.method:
                    request.tail = unquote(request.path[len(path):])
                    return h
                allowed = [*(allowed or []), method]
        if allowed:
            response = Response.error(MethodNotAllowedError(f"{request.method} is not allowed on {request.path}"))
            response.headers = {**(response.headers or {}), "Allow": ", ".join(sorted(set(allowed)))}
            return response
        return Response.error(RouteNotFoundError(f"no route for {request.method} {request.path}"))
