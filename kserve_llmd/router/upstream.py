"""The proxy's upstream HTTP/1.1 client: pooled keep-alive connections to the engines, built for relaying streams.

Why not ``aiohttp.ClientSession`` on this path: a streamed answer is hundreds of small chunks per request, and
through a client session every chunk is buffered in a ``StreamReader``, wakes the handler's task and climbs its
coroutine chain back to a ``write``: about 20 µs of one core per chunk. At 200 concurrent streams an engine step
hands the router 200 chunks at once, and a first token that arrives behind them waits for all of them. Here a chunk
is handed to its sink from the connection's read callback (``httptools`` parses in C): no task, no buffer, one
``write`` to the client. The handler's task wakes twice per request: when the head arrives and when the message ends.

One ``Exchange`` per request, on one ``_Connection`` taken from ``UpstreamPool``:

    pool.request(url, head, body) ─▶ Exchange ─▶ await exchange.head()  (status, headers)
        ─▶ exchange.relay(sink)  body chunks go to ``sink(data)`` as they are parsed (earlier ones first)
           or exchange.read(limit)  the body, gathered
        ─▶ await exchange.done()  ─▶ the connection goes back to the pool (or is closed if the engine said so)

Failures are typed for the proxy: ``UpstreamConnectError`` (nothing answered yet; ``refused`` tells a connection
that could not be made from a pooled one that dropped, e.g. a keep-alive the engine had just closed),
``UpstreamTimeout`` (no byte for ``idle_timeout`` seconds, or the whole exchange over ``total_timeout``), and
``UpstreamBroken`` (the engine died or sent garbage after it started answering). An exchange that is not finished
when its caller lets go (``close()``, e.g. the client disconnected) aborts its connection, which the engine sees
as an abort of the request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from kserve_llmd.router.exchange import (
    Exchange,
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
    _Connection,
)

__all__ = ["DEFAULT_KEEPALIVE", "Exchange", "Origin", "UpstreamBroken", "UpstreamConnectError", "UpstreamError",
           "UpstreamPool", "UpstreamTimeout"]

#: Idle pooled connections are closed after this many seconds: under the 5 s keep-alive timeout of vLLM's server,
#: so the router rarely sends on a connection the engine is about to close.
DEFAULT_KEEPALIVE = 4.0


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an endpoint listens: parsed once per endpoint URL."""

    host: str
    port: int
    tls: bool
    base_path: str  # "" or "/prefix", prepended to request paths
    host_header: bytes

    @classmethod
    def parse(cls, url: str) -> Origin:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {url!r}")
        authority, _, path = rest.partition("/")
        tls = scheme == "https"
        host, port = authority, 443 if tls else 80
        if authority.startswith("["):  # [v6]:port
            end = authority.index("]")
            host = authority[1:end]
            if authority[end + 1:end + 2] == ":":
                port = int(authority[end + 2:])
        elif ":" in authority:
            host, _, p = authority.rpartition(":")
            port = int(p)
        base = "/" + path.rstrip("/") if path.strip("/") else ""
        return cls(host, port, tls, base, authority.encode())


class UpstreamPool:
    """Keep-alive connections per origin, most recently used first. Not thread-safe: one event loop."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        idle_timeout: float,
        total_timeout: float,
        max_idle_per_origin: int = 1024,
        keepalive: float = DEFAULT_KEEPALIVE,
        clock: Callable[[], float] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.loop_time = self.loop.time
        self._clock = clock if clock is not None else self.loop.time
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._total_timeout = total_timeout
        self._max_idle = max_idle_per_origin
        self._keepalive = keepalive
        self._ssl = ssl_context
        self._idle: dict[object, list[_Connection]] = {}  # by Origin
        self._origins: dict[str, Origin] = {}
        self._closed = False

    def origin(self, url: str) -> Origin:
        origin = self._origins.get(url)
        if origin is None:
            if len(self._origins) > 4096:  # endpoints come and go with discovery: never grow without bound
                self._origins.clear()
            origin = self._origins[url] = Origin.parse(url)
        return origin

    async def request(self, url: str, path: str, headers: bytes, body: bytes, *, fresh: bool = False) -> Exchange:
        """Send ``POST base_path+path`` with ``headers`` (``b"Name: value\\r\\n"`` lines) and ``body``, on a pooled
        connection unless ``fresh``. Returns once the request is written; ``await exchange.head()`` for the answer."""
        origin = self.origin(url)
        pooled = None if fresh else self._take(origin)
        conn = pooled or await self._connect(origin)
        target = (origin.base_path + path).encode()
        payload = b"POST %b HTTP/1.1\r\nHost: %b\r\nContent-Length: %d\r\n%b\r\n%b" % (
            target, origin.host_header, len(body), headers, body)
        ex = Exchange(conn, self.loop, self._clock)
        ex.reused = pooled is not None
        conn.start(ex, payload, self._idle_timeout, self._total_timeout)
        return ex

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        oldest_ok = self.loop_time() - self._keepalive
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.idle_since >= oldest_ok:
                return conn
            conn.abort()
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self.loop, origin, self._release), origin.host, origin.port,
                    ssl=(self._ssl or ssl.create_default_context()) if origin.tls else None,
                )
        except TimeoutError:
            raise UpstreamConnectError(f"connect timeout after {self._connect_timeout:g} s", refused=True) from None
        except OSError as exc:
            raise UpstreamConnectError(f"cannot connect: {exc}", refused=True) from None
        return conn

    def _release(self, conn: _Connection) -> None:
        if self._closed:
            conn.abort()
            return
        idle = self._idle.setdefault(conn.origin, [])
        if len(idle) >= self._max_idle:
            conn.abort()
            return
        conn.idle_since = self.loop_time()
        # drop the stalest when the list is full of expired ones (kept cheap: only looks at the bottom)
        if idle and idle[0].idle_since < conn.idle_since - self._keepalive:
            idle.pop(0).abort()
        idle.append(conn)

    def idle_connections(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
        self._idle.clear()
