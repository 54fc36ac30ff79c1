"""Fixtures for the simulator tests: a cluster in the test's event loop, an HTTP session, a raw ZMQ subscriber.

The subscriber decodes nothing with the package's own classes: frames are read with ``zmq`` and payloads with a raw
``msgpack.unpackb`` so the tests are an independent check of the wire format.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgpack
import pytest
import zmq
import zmq.asyncio

from kserve_llmd.simulator import SimCluster, SimConfig

_unique = itertools.count()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def make_cluster() -> AsyncIterator[Callable[..., Awaitable[SimCluster]]]:
    clusters: list[SimCluster] = []

    async def make(**overrides: Any) -> SimCluster:
        options: dict[str, Any] = {"time_scale": 0.0, "block_size": 4, "kv_cache_size": 64}
        options.update(overrides)
        cluster = SimCluster(SimConfig(**options))
        await cluster.start()
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        await cluster.aclose()


def unpack(payload: bytes) -> Any:
    return msgpack.unpackb(payload, raw=False, strict_map_key=False)


class RawSubscriber:
    """A ZMQ SUB socket on one engine's KV-event endpoint; ``sync`` waits until the subscription is live."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str) -> None:
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)

    async def recv(self, timeout_ms: int = 5000) -> list[bytes]:
        if not await self.sock.poll(timeout_ms):
            raise AssertionError("no KV-event message arrived")
        return list(await self.sock.recv_multipart())

    async def drain(self) -> list[list[bytes]]:
        out = []
        while await self.sock.poll(50):
            out.append(list(await self.sock.recv_multipart()))
        return out

    async def sync(self, http: aiohttp.ClientSession, url: str) -> int:
        """Send probe requests until one's events arrive (ZMQ's slow joiner); returns the next expected seq."""
        for _ in range(100):
            prompt = " ".join(f"probe{next(_unique)}w{i}" for i in range(9))
            await complete(http, url, prompt, max_tokens=1)
            if await self.sock.poll(100):
                frames = [list(await self.sock.recv_multipart()), *await self.drain()]
                return int.from_bytes(frames[-1][1], "big") + 1
        raise AssertionError("subscription never became live")

    def close(self) -> None:
        self.sock.close(linger=0)


@pytest.fixture
async def subscriber() -> AsyncIterator[Callable[[str], RawSubscriber]]:
    ctx = zmq.asyncio.Context()
    subs: list[RawSubscriber] = []

    def make(endpoint: str) -> RawSubscriber:
        sub = RawSubscriber(ctx, endpoint)
        subs.append(sub)
        return sub

    yield make
    for sub in subs:
        sub.close()
    ctx.term()


async def complete(http: aiohttp.ClientSession, url: str, prompt: str | list[int], *, max_tokens: int = 4,
                   expect: int = 200, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "sim-model", "prompt": prompt, "max_tokens": max_tokens, **extra}
    async with http.post(url + "/v1/completions", json=body) as resp:
        data = await resp.json()
        assert resp.status == expect, data
        return data  # type: ignore[no-any-return]


def words(n: int, tag: str = "w") -> str:
    """A prompt of exactly ``n`` built-in tokens (one per word)."""
    return " ".join(f"{tag}{i}" for i in range(n))
