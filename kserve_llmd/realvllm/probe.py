"""Small clients for poking a running engine (real vLLM or the simulator): HTTP JSON, /metrics, the KV-event sockets.

Used by tests/vllm and the probes behind docs/real-vllm-findings.md. zmq and prometheus_client are imported lazily.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from kserve_llmd.aio import stop_tasks

#: Generous upper bound for things that happen "right after" a request (KV events are published after the step).
EVENTUALLY = 20.0
REPLAY_END = b"\xff" * 8


async def post_json(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def post_raw(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """Status, content type and the raw body bytes (for SSE streams)."""
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as r:
        return r.status, r.headers.get("content-type", ""), await r.read()


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, await r.json(content_type=None)


async def get_text(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        r.raise_for_status()
        return await r.text()


async def metric_families(base_url: str) -> dict[str, Any]:
    """The ``vllm:*`` metric families of ``base_url/metrics``, parsed by prometheus_client's parser, by name."""
    from prometheus_client.parser import text_string_to_metric_families

    text = await get_text(base_url + "/metrics")
    return {f.name: f for f in text_string_to_metric_families(text) if f.name.startswith("vllm:")}


def sample_value(families: dict[str, Any], family: str, sample: str | None = None) -> float:
    """Sum of the samples named ``sample`` (default: the family name) of one family."""
    name = sample or family
    values = [float(s.value) for s in families[family].samples if s.name == name]
    if not values:
        raise KeyError(f"no sample {name} in {family}")
    return sum(values)


async def replay(endpoint: str, start_seq: int = 0, within: float = EVENTUALLY) -> list[list[bytes]]:
    """Ask a vLLM replay ROUTER socket for every buffered batch with seq >= start_seq.

    Returns the frames exactly as a DEALER receives them, end marker included (vLLM 0.32:
    ``[b"", topic, seq, payload]`` per batch, then ``[b"", b"", b"\\xff"*8, b""]``).
    """
    import zmq
    import zmq.asyncio

    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        await sock.send_multipart([b"", start_seq.to_bytes(8, "big")])
        out: list[list[bytes]] = []
        while True:
            frames = list(await asyncio.wait_for(sock.recv_multipart(), within))
            out.append(frames)
            if REPLAY_END in frames:
                return out
    finally:
        sock.close()
        ctx.term()


async def replay_batches(endpoint: str, start_seq: int = 0) -> list[list[bytes]]:
    """The replayed batches as ``[topic, seq, payload]`` (envelope and end marker stripped)."""
    frames = await replay(endpoint, start_seq)
    return [f[-3:] for f in frames if REPLAY_END not in f]


async def eventually(check: Callable[[], Awaitable[bool]], within: float = EVENTUALLY) -> bool:
    """Poll ``check`` until it is true or ``within`` seconds pass; returns its last answer."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


class LoopLag:
    """How late this process's event loop woke, at worst, while it was watched: a task asks to wake every
    ``period`` seconds and records the lateness. On a loaded 2-core machine with one engine pinned to each core, a
    failure that looks like the engine's (a loopback connect timing out) can be the test process not running;
    the worst lag, printed with the failure, tells the two apart. ``async with LoopLag() as lag: ...; lag.worst``."""

    def __init__(self, period: float = 0.05) -> None:
        self.period = period
        self.worst = 0.0
        self.worst_at = 0.0  # time.monotonic() of the worst wake-up
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.period)
            woke = time.monotonic()
            late = woke - asked - self.period
            if late > self.worst:
                self.worst, self.worst_at = late, woke

    def __str__(self) -> str:
        ago = time.monotonic() - self.worst_at
        return f"worst event-loop lag {self.worst:.2f} s, {ago:.0f} s ago"

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._watch(), name="loop lag")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await stop_tasks(self._task)
