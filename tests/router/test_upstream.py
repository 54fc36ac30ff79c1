"""The proxy's upstream HTTP/1.1 client against scripted servers on real loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from kserve_llmd.router.upstream import (
    Origin,
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamPool,
    UpstreamTimeout,
)

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A loopback TCP server running ``script`` per connection; counts connections and keeps what it read."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.url = ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return body


@asynccontextmanager
async def serving(script_for: Callable[[Server], Script]) -> AsyncIterator[Server]:
    server = Server(lambda r, w: asyncio.sleep(0))
    server.script = script_for(server)
    srv = await asyncio.start_server(server._handle, "127.0.0.1", 0)
    host, port = srv.sockets[0].getsockname()[:2]
    server.url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        srv.close()


def pool(**kw: float) -> UpstreamPool:
    args = {"connect_timeout": 2.0, "idle_timeout": 5.0, "total_timeout": 30.0, **kw}
    return UpstreamPool(**args)  # type: ignore[arg-type]


def keep_alive_echo(server: Server) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            body = await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
                         % (len(body), body))
            await writer.drain()
    return script


def replying(answer: bytes, *, keep_open: bool = True) -> Callable[[Server], Script]:
    """A server that reads one request, writes ``answer``, then holds the connection open (or closes it)."""
    def script_for(server: Server) -> Script:
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(answer)
            await writer.drain()
            if keep_open:
                await reader.read()
        return script
    return script_for


def test_origin_parse() -> None:
    o = Origin.parse("http://10.0.0.1:8000")
    assert (o.host, o.port, o.tls, o.base_path, o.host_header) == ("10.0.0.1", 8000, False, "", b"10.0.0.1:8000")
    o = Origin.parse("https://svc.ns.svc/openai/")
    assert (o.host, o.port, o.tls, o.base_path) == ("svc.ns.svc", 443, True, "/openai")
    o = Origin.parse("http://[::1]:9000")
    assert (o.host, o.port) == ("::1", 9000)
    with pytest.raises(ValueError, match="not an http"):
        Origin.parse("tcp://x:1")


async def test_keep_alive_reuses_one_connection_and_sends_exact_bytes() -> None:
    async with serving(keep_alive_echo) as server:
        p = pool()
        for i in range(3):
            ex = await p.request(server.url, "/v1/completions", b"X-Request-Id: r%d\r\n" % i, b'{"n": %d}' % i)
            await ex.head()
            assert ex.status == 200
            assert ex.headers[b"content-type"] == b"application/json"
            assert await ex.read(1024) == b'{"n": %d}' % i
            ex.close()
        assert server.connections == 1
        assert server.requests[2].startswith(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"\r\nX-Request-Id: r2\r\n" in server.requests[2]
        assert server.requests[2].endswith(b'\r\n\r\n{"n": 2}')
        assert p.idle_connections() == 1
        p.close()


async def test_chunked_body_reaches_the_sink_in_order_including_parts_before_relay() -> None:
    release = asyncio.Event()

    def script_for(server: Server) -> Script:
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            # the head and the first chunk in ONE segment: the body part arrives before the caller sets a sink
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\nfirst\r\n")
            await release.wait()
            writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
            await writer.drain()
            await reader.read()
        return script

    async with serving(script_for) as server:
        p = pool()
        ex = await p.request(server.url, "/x", b"", b"{}")
        await ex.head()
        await asyncio.sleep(0.05)  # the first chunk is parsed and parked
        got: list[bytes] = []
        ex.relay(got.append)
        assert got == [b"first"]
        release.set()
        await ex.done()
        assert got == [b"first", b"second"]
        assert ex.chunked
        assert ex.first_byte_at is not None
        ex.close()
        p.close()


async def test_read_keeps_at_most_limit_bytes() -> None:
    async with serving(replying(b"HTTP/1.1 500 Internal\r\nContent-Length: 10\r\n\r\n0123456789")) as server:
        p = pool()
        ex = await p.request(server.url, "/x", b"", b"{}")
        await ex.head()
        assert ex.status == 500
        assert await ex.read(4) == b"0123"
        p.close()


async def test_body_delimited_by_connection_close_is_complete() -> None:
    closing = replying(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", keep_open=False)
    async with serving(closing) as server:
        p = pool()
        ex = await p.request(server.url, "/x", b"", b"{}")
        await ex.head()
        assert await ex.read(100) == b"until the end"
        assert p.idle_connections() == 0  # not kept: the engine closed it
        p.close()


async def test_interim_1xx_answer_is_skipped() -> None:
    interim = replying(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    async with serving(interim) as server:
        p = pool()
        ex = await p.request(server.url, "/x", b"", b"{}")
        await ex.head()
        assert ex.status == 201
        assert await ex.read(10) == b"ok"
        p.close()


async def test_refused_connection_is_a_connect_error() -> None:
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    p = pool()
    with pytest.raises(UpstreamConnectError) as info:
        await p.request(f"http://127.0.0.1:{port}", "/x", b"", b"{}")
    assert info.value.refused
    p.close()


async def test_pooled_connection_closed_by_the_engine_is_a_retryable_connect_error() -> None:
    """The engine closes a keep-alive connection just as the router reuses it: nothing was answered, so the
    proxy may retry (``refused`` False: the endpoint itself is fine)."""
    def script_for(server: Server) -> Script:
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            body = await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
            await writer.drain()
            await server.read_request(reader)  # the second request is read, then the connection is dropped
        return script

    async with serving(script_for) as server:
        p = pool()
        ex = await p.request(server.url, "/x", b"", b"{}")
        await ex.head()
        await ex.done()
        ex.close()
        ex = await p.request(server.url, "/x", b"", b"{}")
        with pytest.raises(UpstreamConnectError) as info:
            await ex.head()
        assert not info.value.refused
        ex.close()
        p.close()


async def test_idle_keep_alive_connections_expire() -> None:
    async with serving(keep_alive_echo) as server:
        p = UpstreamPool(connect_timeout=2, idle_timeout=5, total_timeout=30, keepalive=0.05)
        for _ in range(2):
            ex = await p.request(server.url, "/x", b"", b"{}")
            await ex.head()
            await ex.done()
            ex.close()
            await asyncio.sleep(0.1)
        assert server.connections == 2  # the first connection had been idle too long to be reused
        p.close()


async def test_silence_before_and_between_chunks_times_out() -> None:
    def script_for(server: Server) -> Script:
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            if len(server.requests) == 2:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
                await writer.drain()
            await reader.read()  # then nothing more
        return script

    async with serving(script_for) as server:
        p = pool(idle_timeout=0.2)
        ex = await p.request(server.url, "/x", b"", b"{}")
        with pytest.raises(UpstreamTimeout, match="answered nothing"):
            await ex.head()
        ex = await p.request(server.url, "/x", b"", b"{}")
        await ex.head()
        with pytest.raises(UpstreamTimeout, match="went silent"):
            await ex.done()
        p.close()


async def test_total_timeout_bounds_a_trickling_answer() -> None:
    def script_for(server: Server) -> Script:
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(100):
                writer.write(b"1\r\na\r\n")
                await writer.drain()
                await asyncio.sleep(0.02)
        return script

    async with serving(script_for) as server:
        p = pool(idle_timeout=1.0, total_timeout=0.3)
        ex = await p.request(server.url, "/x", b"", b"{}")
        await ex.head()
        ex.relay(lambda data: None)
        with pytest.raises(UpstreamTimeout, match="total timeout"):
            await ex.done()
        p.close()


async def test_garbage_and_mid_answer_death_are_broken() -> None:
    def script_for(server: Server) -> Script:
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            if len(server.requests) == 1:
                writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
            await writer.drain()
        return script

    async with serving(script_for) as server:
        p = pool()
        ex = await p.request(server.url, "/x", b"", b"{}")
        with pytest.raises(UpstreamBroken, match="unparseable"):
            await ex.head()
        ex = await p.request(server.url, "/x", b"", b"{}")
        await ex.head()
        with pytest.raises(UpstreamBroken, match="lost mid-answer"):
            await ex.read(1000)
        p.close()


async def test_closing_an_unfinished_exchange_aborts_its_connection() -> None:
    closed = asyncio.Event()

    def script_for(server: Server) -> Script:
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
            await writer.drain()
            await reader.read()  # returns b"" when the router aborts
            closed.set()
        return script

    async with serving(script_for) as server:
        p = pool()
        ex = await p.request(server.url, "/x", b"", b"{}")
        await ex.head()
        ex.close()
        await asyncio.wait_for(closed.wait(), 5)
        assert p.idle_connections() == 0
        p.close()
