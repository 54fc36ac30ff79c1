"""The router's HTTP/1.1 server on real loopback sockets: raw bytes in, raw bytes (or aiohttp) out."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kserve_llmd.router.messages import Request, Response, Routes, Stream
from kserve_llmd.router.server import HttpServer, ServerLimits

pytestmark = pytest.mark.timeout(10)  # a hang is a failure here, not a two-minute wait


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


@asynccontextmanager
async def serving(routes: Routes, idle_timeout: float = 60.0, header_timeout: float = 60.0,
                  max_connections: int = 64) -> AsyncIterator[tuple[HttpServer, int]]:
    """A server with small limits (max_head is 4 × 256); the default timeouts are over the test timeout, so it
    closes only the connections a test asks it to."""
    server = HttpServer(routes, ServerLimits(max_body=1024, max_field=256, idle_timeout=idle_timeout,
                                             header_timeout=header_timeout, max_connections=max_connections))
    _, port = await server.start("127.0.0.1", 0, 16)
    try:
        yield server, port
    finally:
        await server.aclose(grace=0)


@asynccontextmanager
async def connect(port: int, *, rcvbuf: int = 0) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    sock = socket.socket()
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connecting, so the kernel keeps it
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def request(method: str = "GET", path: str = "/", body: bytes = b"", headers: bytes = b"") -> bytes:
    return b"%b %b HTTP/1.1\r\nHost: t\r\n%bContent-Length: %d\r\n\r\n%b" % (
        method.encode(), path.encode(), headers, len(body), body)


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    if "content-length" in headers:
        return Answer(status, headers, await reader.readexactly(int(headers["content-length"])))
    chunks = []
    while size := int(await reader.readuntil(b"\r\n"), 16):
        chunks.append((await reader.readexactly(size + 2))[:-2])
    assert await reader.readexactly(2) == b"\r\n"
    return Answer(status, headers, b"".join(chunks))


async def closed(reader: asyncio.StreamReader) -> bool:
    """The server closed (or reset) the connection, and sent nothing more before it did."""
    try:
        return await reader.read() == b""
    except ConnectionResetError:
        return True


def error_of(answer: Answer) -> dict[str, Any]:
    """The OpenAI error object of an answer, checked for shape."""
    assert answer.headers["content-type"] == "application/json"
    error: dict[str, Any] = orjson.loads(answer.body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == answer.status
    return error


def echo(request: Request) -> Response:
    return Response(request.body, headers={"Content-Type": "text/plain"})


def echo_routes() -> Routes:
    routes = Routes()
    routes.add("POST", "/echo", echo)
    routes.add("GET", "/", lambda request: Response(b"root"))
    return routes


# ----------------------------------------------------------------------------------------------- requests


async def test_json_post_is_answered_with_content_length_over_one_kept_alive_connection() -> None:
    peers = []

    async def completions(request: Request) -> Response:
        peers.append(request.transport.get_extra_info("peername"))
        return Response.json({"echo": orjson.loads(request.body), "n": len(peers)})

    routes = Routes()
    routes.add("POST", "/v1/completions", completions)
    async with serving(routes) as (_, port), aiohttp.ClientSession() as client:
        for n in (1, 2):
            async with client.post(f"http://127.0.0.1:{port}/v1/completions", json={"prompt": "hi"}) as resp:
                body = await resp.read()
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "application/json"
                assert resp.headers["Content-Length"] == str(len(body))
                assert orjson.loads(body) == {"echo": {"prompt": "hi"}, "n": n}
    assert peers[0] == peers[1]  # the same client socket: the connection was kept alive


async def test_pipelined_requests_are_answered_in_request_order() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    handled = []

    async def slow(request: Request) -> Response:
        started.set()
        await release.wait()
        handled.append("slow")
        return Response(b"slow")

    def fast(request: Request) -> Response:
        handled.append(request.query)
        return Response(request.query.encode())

    routes = Routes()
    routes.add("GET", "/slow", slow)
    routes.add("GET", "/fast", fast)
    async with serving(routes) as (_, port), connect(port) as (reader, writer):
        writer.write(request(path="/slow") + request(path="/fast?n=1") + request(path="/fast?n=2"))
        await started.wait()
        release.set()
        assert [(await read_answer(reader)).body for _ in range(3)] == [b"slow", b"n=1", b"n=2"]
    assert handled == ["slow", "n=1", "n=2"]  # one at a time: the fast ones did not run while the slow one waited


async def test_chunked_request_body_is_assembled_whole() -> None:
    async with serving(echo_routes()) as (_, port), connect(port) as (reader, writer):
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        writer.write(b"6\r\n world\r\n0\r\n\r\n")
        answer = await read_answer(reader)
    assert (answer.status, answer.body) == (200, b"hello world")


async def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    async with serving(echo_routes()) as (_, port), connect(port) as (reader, writer):
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        answer = await read_answer(reader)
    assert (answer.status, answer.body) == (200, b"hello")


# ----------------------------------------------------------------------------------------------- refusals


TOO_LARGE = (413, "RequestEntityTooLarge")
HEAD_TOO_LARGE = (431, "RequestHeaderFieldsTooLarge")
MALFORMED = (400, "BadRequestError")


@pytest.mark.parametrize(("sent", "refusal"), [
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n", TOO_LARGE, id="content-length"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"200\r\n" + b"a" * 512 + b"\r\n" b"201\r\n" + b"b" * 513 + b"\r\n", TOO_LARGE, id="chunked"),
    pytest.param(b"GET /" + b"u" * 256 + b" HTTP/1.1\r\nHost: t\r\n\r\n", HEAD_TOO_LARGE, id="url"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"v" * 256 + b"\r\n\r\n", HEAD_TOO_LARGE, id="header-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: %b\r\n" % (i, b"v" * 200) for i in range(6))
                 + b"\r\n", HEAD_TOO_LARGE, id="whole-head"),
    pytest.param(b"NOT AN HTTP REQUEST\r\n\r\n", MALFORMED, id="request-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", MALFORMED,
                 id="upgrade"),
])
async def test_refused_request_gets_an_openai_error_with_connection_close_then_the_close(
    sent: bytes, refusal: tuple[int, str]
) -> None:
    """Over ``max_body`` (413: by Content-Length before the body, or as a chunked body grows), over ``max_field`` /
    ``max_head`` (431), unparseable or an upgrade (400)."""
    async with serving(echo_routes()) as (_, port), connect(port) as (reader, writer):
        writer.write(sent)
        answer = await read_answer(reader)
        assert (answer.status, error_of(answer)["type"]) == refusal
        assert answer.headers["connection"] == "close"
        assert await closed(reader)


async def test_a_client_writing_its_whole_oversized_body_before_reading_still_gets_the_413() -> None:
    """The server refuses on the Content-Length, then reads and drops the body the client goes on sending: closing
    with those bytes unread would reset the connection, and the client would see a broken pipe, not the answer."""
    body = b"x" * (4 << 20)  # far more than the sockets buffer
    async with serving(echo_routes()) as (_, port), connect(port) as (reader, writer):
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()  # all of it was taken
        answer = await read_answer(reader)
        assert (answer.status, error_of(answer)["type"]) == TOO_LARGE
        assert await closed(reader)


async def test_head_just_under_its_limits_is_served() -> None:
    fitting = b"".join(b"X-%d: %b\r\n" % (i, b"v" * 200) for i in range(4))  # about 840 of the 1024 bytes allowed
    async with serving(echo_routes()) as (_, port), connect(port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n" + fitting + b"\r\n")
        assert (await read_answer(reader)).status == 200


# ----------------------------------------------------------------------------------------------- routing


async def test_unknown_path_is_404() -> None:
    async with serving(echo_routes()) as (_, port), connect(port) as (reader, writer):
        writer.write(request(path="/nowhere"))
        answer = await read_answer(reader)
    assert answer.status == 404
    assert error_of(answer)["type"] == "NotFoundError"


async def test_known_path_with_another_method_is_405_with_allow() -> None:
    routes = echo_routes()
    routes.add("PUT", "/echo", echo)
    async with serving(routes) as (_, port), connect(port) as (reader, writer):
        writer.write(request("DELETE", "/echo"))
        answer = await read_answer(reader)
        assert answer.status == 405
        assert answer.headers["allow"] == "POST, PUT"
        assert error_of(answer)["type"] == "MethodNotAllowedError"
        writer.write(request("PUT", "/echo", b"still open"))
        assert (await read_answer(reader)).body == b"still open"  # a refused route is not a broken connection


async def test_prefix_route_gets_the_url_decoded_rest_as_tail() -> None:
    routes = Routes()
    routes.add("GET", "/files/", lambda request: Response(request.tail.encode()), prefix=True)
    async with serving(routes) as (_, port), connect(port) as (reader, writer):
        writer.write(request(path="/files/a%20b/c%2Fd?x=1"))
        answer = await read_answer(reader)
    assert (answer.status, answer.body) == (200, b"a b/c/d")


# ----------------------------------------------------------------------------------------------- handlers


def failing_sync(request: Request) -> Response:
    raise RuntimeError("handler bug")


async def failing_async(request: Request) -> Response:
    await asyncio.sleep(0)
    raise RuntimeError("handler bug")


@pytest.mark.parametrize("handler", [failing_sync, failing_async])
async def test_handler_exception_is_500_and_the_connection_serves_the_next_request(handler: Any) -> None:
    routes = echo_routes()
    routes.add("GET", "/bug", handler)
    async with serving(routes) as (_, port), connect(port) as (reader, writer):
        writer.write(request(path="/bug"))
        answer = await read_answer(reader)
        assert answer.status == 500
        assert error_of(answer)["message"] == "internal error"  # the exception's own text stays in the log
        writer.write(request("POST", "/echo", b"next"))
        assert await read_answer(reader) == (200, {"content-type": "text/plain", "content-length": "4"}, b"next")


async def test_sync_handler_answers_from_the_read_callback_and_async_one_runs_in_a_task() -> None:
    tasks: dict[str, asyncio.Task[Any] | None] = {}

    def sync(request: Request) -> Response:
        tasks["sync"] = asyncio.current_task()
        return Response(b"sync")

    async def coro(request: Request) -> Response:
        tasks["async"] = asyncio.current_task()
        return Response(b"async")

    routes = Routes()
    routes.add("GET", "/sync", sync)
    routes.add("GET", "/async", coro)
    async with serving(routes) as (_, port), connect(port) as (reader, writer):
        writer.write(request(path="/sync") + request(path="/async"))
        assert [(await read_answer(reader)).body for _ in range(2)] == [b"sync", b"async"]
    assert tasks["sync"] is None
    assert tasks["async"] is not None


# ----------------------------------------------------------------------------------------------- streams


async def test_stream_chunks_arrive_as_written_and_end_keeps_the_connection() -> None:
    more = asyncio.Event()

    async def stream(request: Request) -> Stream:
        out = Stream(request, 200, {"Content-Type": "text/event-stream"})
        out.chunk(b"first")
        await more.wait()
        out.chunk(b"second")
        out.end()
        return out

    routes = echo_routes()
    routes.add("GET", "/stream", stream)
    async with serving(routes) as (_, port), connect(port) as (reader, writer):
        writer.write(request(path="/stream"))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nTransfer-Encoding: chunked\r\n" in head
        assert await reader.readexactly(len(b"5\r\nfirst\r\n")) == b"5\r\nfirst\r\n"  # before the second is written
        more.set()
        assert await reader.readexactly(len(b"6\r\nsecond\r\n0\r\n\r\n")) == b"6\r\nsecond\r\n0\r\n\r\n"
        writer.write(request("POST", "/echo", b"after"))
        assert (await read_answer(reader)).body == b"after"


async def test_stream_to_an_http_1_0_client_is_raw_and_ended_by_the_close() -> None:
    async def stream(request: Request) -> Stream:
        out = Stream(request, 200, {"Content-Type": "text/plain"})
        out.chunk(b"one ")
        out.chunk(b"two")
        out.end()
        return out

    routes = Routes()
    routes.add("GET", "/stream", stream)
    async with serving(routes) as (_, port), connect(port) as (reader, writer):
        writer.write(b"GET /stream HTTP/1.0\r\n\r\n")
        head, _, body = (await reader.read()).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Transfer-Encoding" not in head
        assert b"\r\nConnection: close" in head
        assert body == b"one two"


async def test_stream_given_up_on_without_end_closes_the_connection() -> None:
    async def stream(request: Request) -> Stream:
        out = Stream(request, 200, {})
        out.chunk(b"partial")
        return out

    routes = Routes()
    routes.add("GET", "/stream", stream)
    async with serving(routes) as (_, port), connect(port) as (reader, writer):
        writer.write(request(path="/stream"))
        await reader.readuntil(b"\r\n\r\n")
        assert await reader.read() == b"7\r\npartial\r\n"  # then EOF: no terminating chunk, the cut is visible


def never_answering(path: str) -> tuple[Routes, asyncio.Event, asyncio.Event]:
    """Routes with one handler at ``path`` that waits forever; the events: it started, it was cancelled."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def waiting(request: Request) -> Response:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response(b"never")

    routes = Routes()
    routes.add("GET", path, waiting)
    return routes, started, cancelled


async def test_client_disconnect_cancels_the_waiting_handler() -> None:
    routes, started, cancelled = never_answering("/wait")
    async with serving(routes) as (server, port):
        async with connect(port) as (_, writer):
            writer.write(request(path="/wait"))
            await started.wait()
        await cancelled.wait()
        assert not server.connections


async def test_stream_drain_holds_the_handler_while_the_client_does_not_read() -> None:
    """4 MiB through small socket buffers: the handler waits in ``drain`` rather than buffering everything."""
    block = bytes(range(256)) * 256  # 64 KiB
    stalled = asyncio.Event()
    high = most_buffered = 0

    async def big(request: Request) -> Stream:
        nonlocal high, most_buffered
        transport = request.transport
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        high = transport.get_write_buffer_limits()[1]
        out = Stream(request, 200, {})
        for i in range(64):
            out.chunk(i.to_bytes(2, "big") + block)
            most_buffered = max(most_buffered, transport.get_write_buffer_size())
            if transport.get_write_buffer_size() > high:
                stalled.set()
            await out.drain()
        out.end()
        stalled.set()
        return out

    routes = Routes()
    routes.add("GET", "/big", big)
    async with serving(routes) as (_, port), connect(port, rcvbuf=16 * 1024) as (reader, writer):
        writer.write(request(path="/big"))
        await stalled.wait()  # the test has read nothing yet
        answer = await read_answer(reader)
    assert answer.body == b"".join(i.to_bytes(2, "big") + block for i in range(64))
    assert high < most_buffered <= high + len(block) + 16  # over the high-water mark by one chunk at most


# ----------------------------------------------------------------------------------------------- closing


async def test_connection_that_sends_nothing_is_closed_after_the_idle_timeout() -> None:
    async with serving(echo_routes(), idle_timeout=0.2) as (_, port), connect(port) as (reader, _):
        assert await closed(reader)


async def test_head_that_stalls_longer_than_the_idle_timeout_gets_408_and_is_closed() -> None:
    async with serving(echo_routes(), idle_timeout=0.2) as (_, port), connect(port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n")
        answer = await read_answer(reader)
        assert answer.status == 408
        assert "sent nothing for 0.2 s" in error_of(answer)["message"]
        assert await closed(reader)


async def test_head_trickled_within_the_idle_timeout_is_cut_at_the_header_timeout() -> None:
    """A slow-loris client: each byte comes well inside the idle timeout, the head never ends."""
    async with serving(echo_routes(), idle_timeout=0.3, header_timeout=0.5) as (_, port), \
            connect(port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\n")
        started = asyncio.get_running_loop().time()
        answer = None
        for _ in range(40):  # 4 s of one header byte per 0.1 s, unless the server answers first
            writer.write(b"X")
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(read_answer(reader), 0.1)
                break
        waited = asyncio.get_running_loop().time() - started
        assert answer is not None
        assert answer.status == 408
        assert "did not arrive within 0.5 s" in error_of(answer)["message"]
        assert 0.45 <= waited < 2.0
        assert await closed(reader)


async def test_head_that_arrives_in_pieces_within_the_header_timeout_is_served() -> None:
    async with serving(echo_routes(), idle_timeout=0.5, header_timeout=0.6) as (_, port), \
            connect(port) as (reader, writer):
        for _ in range(2):  # the second head starts 0.7 s after the first: each head has its own allowance
            for piece in (b"GET / HT", b"TP/1.1\r\nHo", b"st: t\r\n\r\n"):  # 0.3 s in all
                await asyncio.sleep(0.1)
                writer.write(piece)
            assert (await read_answer(reader)).body == b"root"
            await asyncio.sleep(0.3)


async def test_kept_alive_connection_is_closed_after_the_idle_timeout() -> None:
    async with serving(echo_routes(), idle_timeout=0.2) as (_, port), connect(port) as (reader, writer):
        writer.write(request())
        assert (await read_answer(reader)).status == 200
        assert await closed(reader)


async def test_aclose_lets_the_request_in_flight_finish_and_closes_idle_connections() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def waiting(request: Request) -> Response:
        started.set()
        await release.wait()
        return Response(b"finished")

    routes = echo_routes()
    routes.add("GET", "/wait", waiting)
    async with serving(routes) as (server, port), connect(port) as (busy, busy_w), connect(port) as (idle, idle_w):
        idle_w.write(request())
        assert (await read_answer(idle)).status == 200
        busy_w.write(request(path="/wait"))
        await started.wait()
        closing = asyncio.create_task(server.aclose(grace=5))
        assert await closed(idle)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        release.set()
        answer = await read_answer(busy)
        assert (answer.body, answer.headers["connection"]) == (b"finished", "close")
        assert await closed(busy)
        await closing


async def test_aclose_aborts_a_handler_that_outlives_the_grace() -> None:
    routes, started, cancelled = never_answering("/hang")
    async with serving(routes) as (server, port), connect(port) as (reader, writer):
        writer.write(request(path="/hang"))
        await started.wait()
        await server.aclose(grace=0.05)
        assert await closed(reader)
        await cancelled.wait()


@pytest.mark.parametrize("sent", [
    pytest.param(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", id="connection-close"),
    pytest.param(b"GET / HTTP/1.0\r\n\r\n", id="http-1.0"),
])
async def test_request_that_does_not_keep_alive_gets_connection_close_and_is_closed(sent: bytes) -> None:
    async with serving(echo_routes()) as (_, port), connect(port) as (reader, writer):
        writer.write(sent)
        answer = await read_answer(reader)
        assert (answer.status, answer.body, answer.headers["connection"]) == (200, b"root", "close")
        assert await closed(reader)


# ------------------------------------------------------------------------------------ edge cases found in review


async def test_request_before_a_malformed_one_in_the_same_write_gets_its_own_answer() -> None:
    async with serving(echo_routes()) as (_, port), connect(port) as (reader, writer):
        writer.write(request() + b"NOT AN HTTP REQUEST\r\n\r\n")
        assert (await read_answer(reader)).body == b"root"
        assert (await read_answer(reader)).status == 400
        assert await closed(reader)


async def test_100_continue_of_a_pipelined_request_comes_after_the_earlier_answer() -> None:
    async with serving(echo_routes(), idle_timeout=0.5) as (_, port), connect(port) as (reader, writer):
        writer.write(request() + b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 OK\r\n")  # the GET's answer first
        assert await reader.readexactly(4) == b"root"
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"ok")
        assert (await read_answer(reader)).body == b"ok"


async def test_a_body_arriving_in_pieces_is_not_cut_while_each_piece_comes_within_the_idle_timeout() -> None:
    async with serving(echo_routes(), idle_timeout=0.3) as (_, port), connect(port) as (reader, writer):
        writer.write(request() + b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\n")
        assert (await read_answer(reader)).body == b"root"
        for piece in (b"sl", b"ow", b"ly"):  # a slow upload: 0.45 s in all, longer than the idle timeout
            await asyncio.sleep(0.15)
            writer.write(piece)
        assert (await read_answer(reader)).body == b"slowly"


async def test_a_body_that_stalls_longer_than_the_idle_timeout_gets_408_and_is_closed() -> None:
    async with serving(echo_routes(), idle_timeout=0.2) as (_, port), connect(port) as (reader, writer):
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nst")
        assert (await read_answer(reader)).status == 408
        assert await closed(reader)


async def test_prefix_route_root_is_404_not_405() -> None:
    routes = Routes()
    routes.add("GET", "/files/", lambda request: Response(request.tail.encode()), prefix=True)
    async with serving(routes) as (_, port), connect(port) as (reader, writer):
        writer.write(request(path="/files/"))
        assert (await read_answer(reader)).status == 404


async def test_header_line_is_refused_as_soon_as_it_is_over_the_limit() -> None:
    async with serving(echo_routes(), idle_timeout=0.3) as (_, port), connect(port) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nX-Endless: " + b"v" * 4096)  # no CRLF yet
        assert (await reader.read()).startswith(b"HTTP/1.1 431 ")


async def test_client_leaving_an_unread_large_answer_leaves_no_unretrieved_error() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    routes = Routes()
    routes.add("GET", "/big", lambda request: Response(b"x" * (8 << 20)))
    async with serving(routes) as (server, port):
        async with connect(port, rcvbuf=16 * 1024) as (reader, writer):
            writer.write(request(path="/big"))
            await reader.readuntil(b"\r\n\r\n")
            writer.transport.abort()
        while server.connections:  # noqa: ASYNC110 (connection_lost has no hook a test can await)
            await asyncio.sleep(0.01)
    gc.collect()
    loop.set_exception_handler(None)
    assert [(c["message"], repr(c.get("exception"))) for c in reported] == []


# ----------------------------------------------------------------------------------------------- properties

one_request = st.tuples(st.sampled_from(["get", "length", "chunked", "slow"]), st.binary(max_size=300),
                        st.booleans())


def encoded(kind: str, body: bytes, upper: bool) -> tuple[bytes, bytes]:
    """A request of ``kind`` on the wire, and the body its answer must carry."""
    host = b"HOST: t\r\n" if upper else b"host: t\r\n"
    if kind == "get":
        return b"GET / HTTP/1.1\r\n" + host + b"\r\n", b"root"
    path = b"/slow" if kind == "slow" else b"/echo"
    if kind == "chunked":
        pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
        framed = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        return b"POST /echo HTTP/1.1\r\n" + host + b"Transfer-Encoding: chunked\r\n\r\n" + framed, body
    return b"POST %b HTTP/1.1\r\n%bContent-Length: %d\r\n\r\n%b" % (path, host, len(body), body), body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(one_request, min_size=1, max_size=4), st.lists(st.integers(1, 2000), max_size=8))
def test_pipelined_requests_split_anywhere_get_their_answers_in_order(
    requests: list[tuple[str, bytes, bool]], cuts: list[int]
) -> None:
    """However the bytes of a pipelined series are cut into reads, each request gets its own answer, in order (some
    through a task, ``/slow``, some from the read callback)."""
    wire, expected = zip(*(encoded(*r) for r in requests), strict=True)
    stream = b"".join(wire)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})

    async def slow(request: Request) -> Response:
        await asyncio.sleep(0)
        return Response(request.body)

    async def scenario() -> list[bytes]:
        routes = echo_routes()
        routes.add("POST", "/slow", slow)
        async with serving(routes) as (_, port), connect(port) as (reader, writer):
            for start, end in itertools.pairwise(bounds):
                writer.write(stream[start:end])
                await writer.drain()
                await asyncio.sleep(0)  # let the server read this piece on its own, when it can
            async with asyncio.timeout(5):  # a missing answer fails this example, not the whole run's clock
                return [(await read_answer(reader)).body for _ in requests]

    assert asyncio.run(scenario()) == list(expected)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048) | st.builds(lambda junk, good: good + junk, st.binary(max_size=512),
                                            st.just(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")))
def test_arbitrary_bytes_get_an_answer_or_a_close_and_the_server_keeps_serving(junk: bytes) -> None:
    """Whatever a client sends, then stops sending: the server answers (status lines only from the known set) and
    closes, without a handler error, and a new connection is served as usual."""

    async def scenario() -> tuple[bytes, Answer]:
        async with serving(echo_routes()) as (_, port):
            async with connect(port) as (reader, writer):
                writer.write(junk)
                writer.write_eof()  # the client is done: the server must not wait for more
                async with asyncio.timeout(5):
                    received = await reader.read()
            async with connect(port) as (reader, writer):
                writer.write(request())
                return received, await read_answer(reader)

    received, fresh = asyncio.run(scenario())
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", received)
    assert set(statuses) <= {b"100", b"200", b"400", b"404", b"405", b"413", b"431"}
    assert (fresh.status, fresh.body) == (200, b"root")


# ----------------------------------------------------------------------------------------------- connection cap


async def test_connections_over_the_cap_get_503_then_reset_beyond_twice_the_cap() -> None:
    async with serving(echo_routes(), max_connections=2) as (server, port), contextlib.AsyncExitStack() as stack:
        served = [await stack.enter_async_context(connect(port)) for _ in range(2)]
        for reader, writer in served:
            writer.write(request())
            assert (await read_answer(reader)).body == b"root"
        over = [await stack.enter_async_context(connect(port)) for _ in range(2)]
        for reader, _ in over:  # answered before they ask, and closed
            answer = await read_answer(reader)
            assert (answer.status, answer.headers["connection"], answer.headers["retry-after"]) == (503, "close", "1")
            assert error_of(answer)["type"] == "ServiceUnavailableError"
        reset_reader, _ = await stack.enter_async_context(connect(port))  # 2 served + 2 lingering: at twice the cap
        assert await closed(reset_reader)
        assert server.refusals == {"503": 2, "reset": 1}
        for reader, writer in served:  # the served ones keep being served
            writer.write(request())
            assert (await read_answer(reader)).body == b"root"


async def test_a_place_freed_under_the_cap_is_served_again() -> None:
    async with serving(echo_routes(), max_connections=1) as (server, port):
        async with connect(port) as (reader, writer):
            writer.write(request())
            assert (await read_answer(reader)).status == 200
            async with connect(port) as (over, over_w):
                over_w.write(request())  # a client that writes first still reads its 503
                assert (await read_answer(over)).status == 503
                assert await closed(over)
        for _ in range(100):  # the server sees both closes
            if not server.connections:
                break
            await asyncio.sleep(0.01)
        async with connect(port) as (reader, writer):
            writer.write(request())
            assert (await read_answer(reader)).body == b"root"
