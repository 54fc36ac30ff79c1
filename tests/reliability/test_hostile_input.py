"""Hostile input over real sockets: random and malformed request bodies (property-based), oversized bodies and
headers, and garbage on the KV-event stream. The router answers OpenAI-shaped 4xx, never a 500, and keeps routing.

The router runs in a background thread's event loop (module-scoped), so hypothesis drives plain blocking HTTP."""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import msgpack
import orjson
import pytest
import zmq
import zmq.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rel_support import StubEngine, router_over, until

from kserve_llmd.router.config import LimitsConfig
from kserve_llmd.wire.kv_events import BlockStored, EventBatch, encode_batch, encode_seq

MAX_BODY = 256 * 1024
FIELDS = ("model", "prompt", "messages", "max_tokens", "max_completion_tokens", "cache_salt", "stream",
          "stream_options", "n", "lora_request", "kv_transfer_params", "priority", "request_id", "temperature")

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=20)


class RouterThread:
    """A precise-prefix router (it tokenizes prompts: the most parsing) over a stub engine, in its own loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with StubEngine() as stub, router_over([stub.url], preset="precise-prefix",
                                                     limits=LimitsConfig(max_body_bytes=MAX_BODY)) as router:
            self.port = int(router.url.rsplit(":", 1)[1])
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> RouterThread:
        self._thread.start()
        self._ready.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self.loop.close()

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("POST", "/v1/chat/completions", body=body,
                         headers={"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def router() -> Iterator[RouterThread]:
    with RouterThread() as r:
        yield r


def enc(body: Any) -> bytes:
    """stdlib JSON: it writes integers beyond 64 bits, which the router's parser must refuse cleanly."""
    return json.dumps(body).encode()


def check(status: int, payload: bytes) -> None:
    assert status < 500, (status, payload[:300])
    if status >= 400:
        body = orjson.loads(payload)
        assert isinstance(body["error"]["message"], str)
        assert isinstance(body["error"]["type"], str)


VALID: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}
hostile = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@hostile
@given(body=json_values)
def test_any_json_body_is_answered_cleanly(router: RouterThread, body: Any) -> None:
    check(*router.post(enc(body)))


@hostile
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_wrong_type_in_any_field_is_answered_cleanly(router: RouterThread, field: str, value: Any) -> None:
    check(*router.post(enc({**VALID, field: value})))


@hostile
@given(prefix=st.sampled_from(FIELDS), raw=st.binary(max_size=200))
def test_invalid_bytes_and_utf8_are_refused_cleanly(router: RouterThread, prefix: str, raw: bytes) -> None:
    body = b'{"model": "m", "' + prefix.encode() + b'": "' + raw + b'\xff\xfe"}'
    status, payload = router.post(body)
    assert 400 <= status < 500
    check(status, payload)


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,  # deeply nested
    b'{"model": "m", "prompt": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    orjson.dumps({**VALID, "messages": [{"role": "user", "content": "x"}] * 20_000}),  # huge array
    orjson.dumps({"model": "m", "prompt": list(range(60_000))}),  # token ids
    orjson.dumps({"model": "m", "prompt": ["a"] * 60_000}),
    orjson.dumps({**VALID, "messages": [{"role": "user", "content": [{"type": "text", "text": 1}] * 1000}]}),
    b"",
    b"null",
    b'{"model": "m", "prompt": "\\ud800"}',  # a lone surrogate escape
])
def test_pathological_bodies(router: RouterThread, body: bytes) -> None:
    check(*router.post(body))


def test_body_and_header_limits(router: RouterThread) -> None:
    status, payload = router.post(b'{"model": "m", "prompt": "' + b"a" * (MAX_BODY + 10) + b'"}')
    assert status == 413
    check(status, payload)
    status, _ = router.post(orjson.dumps(VALID), headers={"X-Big": "a" * 64 * 1024})
    assert 400 <= status < 500  # refused by the HTTP parser (max_field_size) before any handler runs


# ------------------------------------------------------------------------------------------- KV-event fuzz


def _garbage(rng: random.Random) -> list[list[bytes]]:
    valid = encode_batch(EventBatch(ts=0.0, events=[BlockStored(block_hashes=[1, 2], parent_block_hash=None,
                                                                token_ids=list(range(32)), block_size=16)]))
    out: list[list[bytes]] = []
    for seq in range(400):
        kind = seq % 8
        if kind == 0:
            payload = rng.randbytes(rng.randrange(0, 512))
        elif kind == 1:
            payload = valid[: rng.randrange(1, len(valid))]  # truncated msgpack
        elif kind == 2:
            payload = b"\xdd\xff\xff\xff\xff"  # an array header claiming 4 billion entries, and nothing after
        elif kind == 3:
            payload = msgpack.packb([0.0, [["BlockStored", list(range(200_000)), None, [], 16]] * 6, None])
        elif kind == 4:
            payload = msgpack.packb([0.0, [{"type": "BlockStored", "block_hashes": "x"}], None])
        elif kind == 5:
            payload = msgpack.packb({"not": "a batch"})
        elif kind == 6:
            out.append([rng.randbytes(3)])  # wrong frame count
            continue
        else:
            payload = msgpack.packb([0.0, [[1, 2, 3]] * 10_000, 0])
        out.append([b"kv@fuzz", encode_seq(seq + 1), payload])
    return out


async def test_kv_event_garbage_is_dropped_counted_and_bounded() -> None:
    ctx = zmq.asyncio.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    try:
        async with StubEngine() as stub, \
                router_over([f"{stub.url}=tcp://127.0.0.1:{port}"], preset="precise-prefix") as router, \
                aiohttp.ClientSession() as client:
            ingester = router.ingester
            assert ingester is not None

            async def joined() -> bool:  # slow joiner: a harmless empty batch until the router sees one
                await pub.send_multipart([b"kv@fuzz", encode_seq(0), encode_batch(EventBatch(ts=0.0))])
                return ingester.stats.batches >= 1

            await until(joined)
            frames = _garbage(random.Random(11))
            for msg in frames:
                await pub.send_multipart(msg)
            stats = ingester.stats
            await until(lambda: stats.malformed_frames + stats.decode_errors + stats.batches >= len(frames) // 2)
            assert stats.malformed_frames >= 1
            assert stats.decode_errors >= 1
            assert len(ingester.index) <= 2  # nothing from the garbage (the truncated batch holds 2 blocks)
            body = {"model": "m", "prompt": "still routing", "max_tokens": 1}
            async with client.post(router.url + "/v1/completions", json=body) as resp:
                assert resp.status == 200
            assert ingester._sources  # the subscription is still alive
            assert all(s.task is not None and not s.task.done() for s in ingester._sources.values())
    finally:
        pub.close()
        ctx.term()
