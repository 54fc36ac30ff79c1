"""A lean, timing-exact engine and client for ``router_overhead.py`` (raw asyncio protocols, no framework).

Why: measuring a router's added latency to within a millisecond needs an engine and a client that cost almost no
CPU or add jitter themselves. The full simulator in a 200-stream closed loop queues by its own model: nearly every
step then carries a prefill, which the ``llama-8b-h100`` profile charges a fixed 10 ms, so TTFT p50 is 0.4–0.6 s and
moves by tens of ms between runs, which swamps what the router adds. (Not CPU: measured on 2026-11-25 with this
module's client, the simulator used 7–8% of its core.) These two do the minimum:

- ``LeanEngine``: an OpenAI-shaped upstream with a real engine's CADENCE: a request waits ``ttft``, then joins the
  running batch, and every ``itl`` one engine step writes one SSE token chunk to every running stream (as vLLM's
  scheduler does); ``[DONE]`` follows the last token. Non-streaming answers come after ``ttft + (n-1)·itl`` in one
  JSON body with a Content-Length. It serves ``/v1/models``, ``/metrics`` and ``/health`` for the router's scraper.
- ``LeanClient``: keep-alive connections, one request at a time each; TTFT = the first ``data:`` bytes (not the
  headers, which the engine sends at once), end = the chunked terminator (or the Content-Length).

    python benchmarks/lean_http.py --ttft-ms 20 --itl-ms 25 --ready-file PATH   # serve the engine
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import cast

import orjson

MODEL = "sim-model"
_TOKEN = b'data: {"id":"cmpl-lean","object":"text_completion","model":"sim-model","choices":[{"index":0,' \
         b'"text":" tok","logprobs":null,"finish_reason":null}]}\n\n'
_DONE = b"data: [DONE]\n\n"
_SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n" \
            b"Transfer-Encoding: chunked\r\n\r\n"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _response(body: bytes, content_type: bytes = b"application/json", status: bytes = b"200 OK") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (status, content_type, len(body),
                                                                                  body)


_TOKEN_CHUNK = _chunk(_TOKEN)
_END = _chunk(_DONE) + b"0\r\n\r\n"
_MODELS = _response(orjson.dumps({"object": "list", "data": [{"id": MODEL, "object": "model",
                                                               "owned_by": "lean", "root": MODEL, "parent": None}]}))
_HEALTH = _response(b"")
_NOT_FOUND = _response(b'{"error": {"message": "not found", "type": "NotFoundError"}}', status=b"404 Not Found")


class _Stream:
    __slots__ = ("left", "transport")

    def __init__(self, transport: asyncio.Transport, left: int) -> None:
        self.transport = transport
        self.left = left


class LeanEngine:
    def __init__(self, ttft: float, itl: float) -> None:
        self.ttft = ttft
        self.itl = itl
        self.running: list[_Stream] = []
        self._server: asyncio.Server | None = None
        self._step_task: asyncio.Task[None] | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _EngineConn(self), host, port, backlog=4096)
        self._step_task = asyncio.create_task(self._steps())
        sock_port = self._server.sockets[0].getsockname()[1]
        return f"http://{host}:{sock_port}"

    def metrics(self) -> bytes:
        return _response(b"vllm:num_requests_running %d\nvllm:num_requests_waiting 0\nvllm:kv_cache_usage_perc 0\n"
                         % len(self.running), b"text/plain")

    async def _steps(self) -> None:
        """One engine step per ``itl``: one token to every running stream (absolute schedule, no drift)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.itl
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            still: list[_Stream] = []
            for s in self.running:
                if s.transport.is_closing():
                    continue
                s.left -= 1
                s.transport.write(_TOKEN_CHUNK + _END if s.left <= 0 else _TOKEN_CHUNK)
                if s.left > 0:
                    still.append(s)
            self.running = still

    def admit(self, transport: asyncio.Transport, stream: bool, max_tokens: int) -> None:
        loop = asyncio.get_running_loop()
        n = max(1, max_tokens)
        if stream:
            transport.write(_SSE_HEAD)

            def first_token() -> None:  # the prefill step produces the first token; decode steps the rest
                if transport.is_closing():
                    return
                transport.write(_TOKEN_CHUNK + _END if n == 1 else _TOKEN_CHUNK)
                if n > 1:
                    self.running.append(_Stream(transport, n - 1))

            loop.call_later(self.ttft, first_token)
        else:
            body = orjson.dumps({"id": "cmpl-lean", "object": "text_completion", "model": MODEL,
                                 "choices": [{"index": 0, "text": " tok" * n, "finish_reason": "length"}],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1}})
            loop.call_later(self.ttft + (n - 1) * self.itl,
                            lambda: None if transport.is_closing() else transport.write(_response(body)))


class _EngineConn(asyncio.Protocol):
    def __init__(self, engine: LeanEngine) -> None:
        self.engine = engine
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].decode("latin-1")
            lines = head.split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buf) < head_end + 4 + length:
                return
            body = self.buf[head_end + 4: head_end + 4 + length]
            self.buf = self.buf[head_end + 4 + length:]
            self._handle(method, path.split("?")[0], body)

    def _handle(self, method: str, path: str, body: bytes) -> None:
        t = self.transport
        assert t is not None
        if method == "GET":
            t.write(_MODELS if path == "/v1/models" else self.engine.metrics() if path == "/metrics"
                    else _HEALTH if path == "/health" else _NOT_FOUND)
            return
        req = orjson.loads(body)
        max_tokens = req.get("max_tokens")
        self.engine.admit(t, req.get("stream") is True, max_tokens if isinstance(max_tokens, int) else 16)


# --------------------------------------------------------------------------------------------------- client


class _ClientConn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[float, float]] | None = None
        self._reset()

    def _reset(self) -> None:
        self.head = b""
        self.in_body = False
        self.chunked = False
        self.length = -1
        self.got = 0
        self.tail = b""
        self.first: float | None = None
        self.start = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def request(self, raw: bytes) -> asyncio.Future[tuple[float, float]]:
        assert self.transport is not None
        self._reset()
        self.waiter = asyncio.get_running_loop().create_future()
        self.start = time.perf_counter()
        self.transport.write(raw)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end].lower(), self.head[end + 4:]
            if not head.startswith(b"http/1.1 200"):
                assert self.waiter is not None
                self.waiter.set_exception(RuntimeError(head.split(b"\r\n")[0].decode()))
                return
            self.in_body = True
            self.chunked = b"transfer-encoding: chunked" in head
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    self.length = int(line.split(b":")[1])
        if not data:
            return
        if self.first is None and (not self.chunked or b"data:" in data):
            self.first = now
        self.got += len(data)
        self.tail = (self.tail + data)[-16:]
        done = self.tail.endswith(b"\r\n0\r\n\r\n") if self.chunked else self.got >= self.length
        if done and self.waiter is not None and not self.waiter.done():
            assert self.first is not None
            self.waiter.set_result((self.first - self.start, now - self.start))


class LeanClient:
    """``n`` keep-alive connections to ``url``; ``request(i, body)`` on connection ``i`` returns (ttft, e2e)."""

    def __init__(self, url: str, n: int) -> None:
        hostport = url.removeprefix("http://")
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.n = n
        self.conns: list[_ClientConn] = []

    async def __aenter__(self) -> LeanClient:
        loop = asyncio.get_running_loop()
        for _ in range(self.n):
            _, proto = await loop.create_connection(_ClientConn, self.host, self.port)
            self.conns.append(proto)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for c in self.conns:
            if c.transport is not None:
                c.transport.close()

    def raw(self, body: bytes) -> bytes:
        return (b"POST /v1/completions HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (self.host.encode(), self.port, len(body), body))

    async def request(self, i: int, body: bytes) -> tuple[float, float]:
        return await self.conns[i].request(self.raw(body))


async def _serve(ttft: float, itl: float, ready: str) -> None:
    engine = LeanEngine(ttft, itl)
    url = await engine.start()
    tmp = Path(f"{ready}.tmp{os.getpid()}")
    tmp.write_bytes(orjson.dumps({"engines": [{"url": url, "model": MODEL, "role": "both"}]}))  # noqa: ASYNC240
    tmp.replace(ready)  # noqa: ASYNC240 - once, before serving
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ttft-ms", type=float, required=True)
    parser.add_argument("--itl-ms", type=float, required=True)
    parser.add_argument("--ready-file", required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(_serve(args.ttft_ms / 1e3, args.itl_ms / 1e3, args.ready_file))
    except ImportError:
        asyncio.run(_serve(args.ttft_ms / 1e3, args.itl_ms / 1e3, args.ready_file))


if __name__ == "__main__":
    main()
