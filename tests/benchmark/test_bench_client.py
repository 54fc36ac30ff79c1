"""The streaming client measures what vLLM's benchmark_serving measures, against latencies known exactly."""

from __future__ import annotations

import itertools
import statistics
import time

import aiohttp
import pytest
from conftest import EngineDouble

from kserve_llmd.benchmark.client import send
from kserve_llmd.benchmark.records import BenchRequest, RequestRecord

MS = 1e6


def _tolerance(expected_ms: float) -> float:
    return max(5.0, 0.05 * expected_ms)


async def _send(engine: EngineDouble, request: BenchRequest, timeout_s: float = 30.0) -> RequestRecord:
    async with aiohttp.ClientSession() as session:
        return await send(session, engine.url, request, "m", clock=time.perf_counter_ns, level="l", warmup=False,
                          origin_ns=time.perf_counter_ns(), timeout_s=timeout_s)


async def test_known_latencies_are_reported_within_tolerance(engine: EngineDouble) -> None:
    """The double stamps each chunk as it sends it, on the same clock: the harness must report those latencies
    within max(5 ms, 5%). The nominal sleeps are checked too: never under-reported, and no unit or offset error
    (their upper bound is loose because a sleep can overshoot on a loaded machine; the stamps already cover that).
    """
    engine.ttft_s, engine.itl_s = 0.120, 0.040
    start = time.perf_counter_ns()
    r = await _send(engine, BenchRequest(index=0, prompt="a b c d", max_tokens=8, prompt_tokens=4))
    assert r.ok, r.error
    assert r.output_tokens == 8
    assert r.chunks == 8
    assert len(r.itl_ns) == 7
    assert r.ttft_ns is not None
    assert r.e2e_ns is not None
    sent = engine.sent_ns[0]
    actual_ttft = (sent[0] - start) / MS  # the client's start is taken after ``start``, so this bounds it above
    assert actual_ttft - _tolerance(actual_ttft) <= r.ttft_ns / MS <= actual_ttft + 1.0
    for measured, (a, b) in zip(r.itl_ns, itertools.pairwise(sent), strict=True):
        actual = (b - a) / MS
        assert abs(measured / MS - actual) <= _tolerance(actual), (measured / MS, actual)
    nominal = {"ttft": 120.0, "itl": 40.0, "tpot": 40.0, "e2e": 120.0 + 7 * 40.0}
    reported = {"ttft": r.ttft_ns / MS, "itl": statistics.median(r.itl_ns) / MS, "tpot": (r.tpot_ns or 0) / MS,
                "e2e": r.e2e_ns / MS}
    for name, value in nominal.items():
        assert value - 1.0 <= reported[name] <= value * 1.5 + 5.0, (name, reported[name])
    assert r.prompt_tokens == 4
    assert r.cached_tokens == 3


async def test_chunk_is_not_a_token_when_the_engine_batches(engine: EngineDouble) -> None:
    engine.ttft_s, engine.itl_s, engine.tokens_per_chunk = 0.0, 0.0, 4
    r = await _send(engine, BenchRequest(index=0, prompt="x", max_tokens=12))
    assert r.ok
    assert r.chunks == 3
    assert len(r.itl_ns) == 2
    assert r.output_tokens == 12  # from usage, not from chunks
    assert r.tpot_ns == pytest.approx((r.e2e_ns - r.ttft_ns) / 11)


async def test_chat_role_chunk_does_not_count_and_session_header_is_sent(engine: EngineDouble) -> None:
    request = BenchRequest(index=0, messages=({"role": "user", "content": "hi there"},), max_tokens=3,
                           headers=(("x-session-id", "s1"),))
    r = await _send(engine, request)
    assert r.ok
    assert r.chunks == 3
    assert len(r.itl_ns) == 2
    body = engine.bodies[0]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "hi there"}]
    assert engine.headers[0]["x-session-id"] == "s1"


async def test_http_error_is_recorded_with_status_and_message(engine: EngineDouble) -> None:
    engine.fail_status = 429
    r = await _send(engine, BenchRequest(index=0, prompt="x", max_tokens=2))
    assert not r.ok
    assert r.status == 429
    assert r.error == "HTTP 429: too many requests"


async def test_error_inside_the_stream_fails_the_request(engine: EngineDouble) -> None:
    engine.fail_mid_stream = True
    r = await _send(engine, BenchRequest(index=0, prompt="x", max_tokens=5))
    assert not r.ok
    assert r.status == 200
    assert r.error == "stream error: engine died"


async def test_refused_connection_is_recorded_not_raised() -> None:
    double = EngineDouble(url="http://127.0.0.1:9")  # discard port: nothing listens there
    r = await _send(double, BenchRequest(index=0, prompt="x", max_tokens=2), timeout_s=5)
    assert not r.ok
    assert r.status is None
    assert r.error
