"""The proxy's mechanics on real loopback HTTP, against ``EngineDouble`` upstreams."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from engine_double import EngineDouble, free_port
from harness import health_is, running_router, until

from kserve_llmd.router.config import EndpointSpec, LimitsConfig, RouterConfig, ScrapeConfig, TimeoutsConfig

COMPLETION = {"model": "m", "prompt": "hello there", "max_tokens": 5}


async def test_non_streaming_passthrough_and_request_id() -> None:
    async with EngineDouble() as eng, running_router([eng]) as router, aiohttp.ClientSession() as client:
        async with client.post(router.url + "/v1/completions", json=COMPLETION,
                               headers={"X-Request-Id": "abc-1", "x-custom": "kept"}) as resp:
            assert resp.status == 200
            body = await resp.json()
            assert resp.headers["X-Request-Id"] == "abc-1"
        assert body["choices"][0]["text"] == "hello"
        assert eng.seen[0].headers["X-Request-Id"] == "abc-1"
        assert eng.seen[0].headers["x-custom"] == "kept"
        assert eng.seen[0].body == COMPLETION
        # a generated id when the client sends none
        async with client.post(router.url + "/v1/chat/completions",
                               json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}) as resp:
            assert resp.status == 200
        generated = eng.seen[1].headers["X-Request-Id"]
        assert generated
        assert generated != "abc-1"
        assert eng.seen[1].path == "/v1/chat/completions"


async def test_models_union_and_health() -> None:
    async with EngineDouble(model="a") as a, EngineDouble(model="b", loras=["b-lora"]) as b, \
            running_router([a, b]) as router, aiohttp.ClientSession() as client:
        async with client.get(router.url + "/v1/models") as resp:
            ids = [m["id"] for m in (await resp.json())["data"]]
        assert ids == ["a", "b", "b-lora"]
        async with client.get(router.url + "/health") as resp:
            assert resp.status == 200
            assert (await resp.json())["healthy_endpoints"] == 2
        # requests go to the endpoint serving their model
        for model in ("a", "b", "b-lora"):
            async with client.post(router.url + "/v1/completions", json={**COMPLETION, "model": model}) as resp:
                assert resp.status == 200
        assert [s.body["model"] for s in a.seen] == ["a"]
        assert [s.body["model"] for s in b.seen] == ["b", "b-lora"]


async def test_stream_is_passed_through_chunk_by_chunk() -> None:
    """The client reads chunk i before the engine has even produced chunk i+1: nothing is buffered."""
    async with EngineDouble(mode="gated", chunks=3) as eng, running_router([eng]) as router, \
            aiohttp.ClientSession() as client:
        async with client.post(router.url + "/v1/completions", json={**COMPLETION, "stream": True}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            received = b""
            for i in range(3):
                eng.gate.put_nowait(None)  # release exactly one chunk
                while f"t{i}".encode() not in received:
                    received += await resp.content.readany()
                assert f"t{i + 1}".encode() not in received
            rest = await resp.read()
        assert (received + rest).endswith(b"data: [DONE]\n\n")


async def test_pending_prefill_is_held_until_the_first_chunk() -> None:
    """``prefill_tokens``: the request's prompt counts as prefill work on its endpoint until the engine's first
    answer byte, then only as in-flight work; nothing is left behind at the end."""
    async with EngineDouble(mode="gated", chunks=2) as eng, running_router([eng]) as router, \
            aiohttp.ClientSession() as client:
        ep = next(iter(router.endpoints))
        async with client.post(router.url + "/v1/completions", json={**COMPLETION, "stream": True}) as resp:
            assert resp.status == 200
            # before any chunk: the whole prompt (no prefix cache here) is pending prefill
            assert ep.prefill_tokens > 0
            assert ep.prefill_tokens == ep.inflight_tokens - COMPLETION["max_tokens"]
            eng.gate.put_nowait(None)
            assert b"t0" in await resp.content.readany()
            assert ep.prefill_tokens == 0  # the first token came: decoding now
            assert ep.inflight_tokens > 0
            eng.gate.put_nowait(None)
            await resp.read()
        await until(lambda: ep.inflight_requests == 0)
        assert (ep.prefill_tokens, ep.inflight_tokens) == (0, 0)


async def test_slow_client_pauses_reading_from_the_engine() -> None:
    """A client that does not read: the router stops reading from the engine once the client's socket buffer is
    full, so the engine's own writes block (nothing piles up in the router); then every byte arrives in order."""
    total = 800 * 64 * 1024  # 50 MiB: far more than the loopback sockets' buffers (a few MiB each way) can hold
    async with EngineDouble(chunks=800, chunk_bytes=64 * 1024) as eng, running_router([eng]) as router, \
            aiohttp.ClientSession() as client:
        async with client.post(router.url + "/v1/completions", json={**COMPLETION, "stream": True}) as resp:
            assert resp.status == 200
            await asyncio.sleep(0.5)  # the client reads nothing meanwhile
            stalled_at = eng.sent_bytes
            assert stalled_at < total // 2
            await asyncio.sleep(0.2)
            assert eng.sent_bytes == stalled_at  # still stalled: the router is not buffering the stream
            body = await resp.read()
        texts = [orjson.loads(line.removeprefix(b"data: "))["choices"][0]["text"]
                 for line in body.split(b"\n\n") if line.startswith(b"data: {")]
        assert len(texts) == 800
        assert all(t == f"{i % 10}" * 64 * 1024 for i, t in enumerate(texts))
        assert eng.sent_bytes == total


async def test_client_disconnect_cancels_upstream() -> None:
    async with EngineDouble(mode="gated", chunks=5) as eng, running_router([eng]) as router:
        async with aiohttp.ClientSession() as client:
            resp = await client.post(router.url + "/v1/completions", json={**COMPLETION, "stream": True})
            eng.gate.put_nowait(None)
            assert b"t0" in await resp.content.readany()
            resp.close()  # the client goes away mid-stream
        await asyncio.wait_for(eng.closed.wait(), timeout=30)  # the engine saw its connection close
        ep = next(iter(router.endpoints))
        await until(lambda: ep.inflight_requests == 0)  # the books settle once the handler has unwound
        assert ep.inflight_tokens == 0


async def test_client_disconnect_while_engine_is_prefilling() -> None:
    async with EngineDouble(mode="hang") as eng, running_router([eng]) as router:
        async with aiohttp.ClientSession() as client:
            task = asyncio.create_task(client.post(router.url + "/v1/completions", json=COMPLETION))
            await until(lambda: bool(eng.seen))
            ep = next(iter(router.endpoints))
            assert ep.prefill_tokens > 0  # no byte yet: the prompt is pending prefill there
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await asyncio.wait_for(eng.closed.wait(), timeout=30)
        await until(lambda: ep.inflight_requests == 0)
        assert ep.prefill_tokens == 0  # released with the abandoned attempt


async def test_connect_failure_retries_on_next_endpoint() -> None:
    # scrape rarely, so the router still believes the doomed endpoint is healthy when it dies
    async with EngineDouble() as good, EngineDouble() as doomed, \
            running_router([doomed, good], scrape=ScrapeConfig(interval=30)) as router, \
            aiohttp.ClientSession() as client:
        await doomed.aclose()
        for _ in range(4):  # round robin: at least two picks land on the dead endpoint
            async with client.post(router.url + "/v1/completions", json=COMPLETION) as resp:
                assert resp.status == 200
        assert len(good.seen) == 4
        # passive health: the first refused connection takes the dead endpoint out at once, so one retry only
        assert router.metrics.registry.get_sample_value("kserve_llmd_router_retries_total") == 1
        assert [ep.healthy for ep in router.endpoints] == [False, True]
        assert all(ep.inflight_requests == 0 and ep.inflight_tokens == 0 for ep in router.endpoints)
        assert all(ep.prefill_tokens == 0 for ep in router.endpoints)  # the refused attempt gave its share back


async def test_keep_alive_closed_by_the_engine_is_retried_on_a_new_connection() -> None:
    """One endpoint that drops every request arriving on a reused connection: the router sends it again on a new
    connection to the SAME endpoint (no other endpoint to move to), and the engine is not marked down."""
    async with EngineDouble(mode="drop_reused") as eng, running_router([eng]) as router, \
            aiohttp.ClientSession() as client:
        for _ in range(3):
            async with client.post(router.url + "/v1/completions", json=COMPLETION) as resp:
                assert resp.status == 200
                assert (await resp.json())["choices"][0]["text"] == "hello"
        assert len(eng.seen) == 5  # 1 + (dropped, resent) × 2
        assert all(ep.healthy for ep in router.endpoints)


async def test_all_endpoints_refuse_gives_502() -> None:
    async with EngineDouble() as eng, running_router([eng], scrape=ScrapeConfig(interval=30)) as router, \
            aiohttp.ClientSession() as client:
        await eng.aclose()
        async with client.post(router.url + "/v1/completions", json=COMPLETION) as resp:
            assert resp.status == 502
            assert (await resp.json())["error"]["type"] == "BadGatewayError"


async def test_upstream_error_status_and_body_pass_through() -> None:
    async with EngineDouble(mode="error", error_status=422) as eng, running_router([eng]) as router, \
            aiohttp.ClientSession() as client, client.post(router.url + "/v1/completions", json=COMPLETION) as resp:
        assert resp.status == 422
        assert (await resp.json())["error"]["message"] == "bad thing"


async def test_upstream_dies_mid_stream_is_reported_and_not_retried() -> None:
    async with EngineDouble(mode="die_mid_stream") as dying, EngineDouble() as other, \
            running_router([dying, other], preset="round-robin") as router, aiohttp.ClientSession() as client:
        first = min(router.endpoints, key=lambda ep: ep.index)
        assert first.url == dying.url  # round robin starts with the first endpoint
        async with client.post(router.url + "/v1/completions", json={**COMPLETION, "stream": True}) as resp:
            assert resp.status == 200
            text = (await resp.read()).decode()
        assert "t0" in text
        assert "failed mid-stream" in text
        assert "[DONE]" not in text
        assert other.seen == []  # bytes had reached the client: never retried


async def test_hanging_engine_times_out_with_504() -> None:
    async with EngineDouble(mode="hang") as eng, \
            running_router([eng], timeouts=TimeoutsConfig(first_byte=0.2)) as router, \
            aiohttp.ClientSession() as client, client.post(router.url + "/v1/completions", json=COMPLETION) as resp:
        assert resp.status == 504
        assert (await resp.json())["error"]["type"] == "GatewayTimeoutError"


async def test_bad_input_is_refused_cleanly() -> None:
    limits = LimitsConfig(max_body_bytes=1000, max_header_bytes=2048)
    async with EngineDouble() as eng, running_router([eng], limits=limits) as router, \
            aiohttp.ClientSession() as client:
        url = router.url + "/v1/completions"
        cases = [
            (b"{not json", 400, "BadRequestError"),
            (b"[1, 2]", 400, "BadRequestError"),
            (orjson.dumps({"prompt": "x"}), 400, "BadRequestError"),
            (orjson.dumps({"model": 3, "prompt": "x"}), 400, "BadRequestError"),
            (orjson.dumps({"model": "nope", "prompt": "x"}), 404, "NotFoundError"),
            (orjson.dumps({"model": "m", "prompt": "x" * 2000}), 413, "RequestEntityTooLarge"),
        ]
        for raw, status, kind in cases:
            async with client.post(url, data=raw, headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == status, raw[:40]
                assert (await resp.json())["error"]["type"] == kind
        async with client.post(url, json=COMPLETION, headers={"x-big": "y" * 4096}) as resp:
            assert resp.status in (400, 431)
        # still serving, nothing leaked
        async with client.post(url, json=COMPLETION) as resp:
            assert resp.status == 200
        assert len(eng.seen) == 1
        assert all(ep.inflight_requests == 0 for ep in router.endpoints)


async def test_api_key() -> None:
    async with EngineDouble() as eng, running_router([eng], api_key="s3cret") as router, \
            aiohttp.ClientSession() as client:
        url = router.url + "/v1/completions"
        async with client.post(url, json=COMPLETION) as resp:
            assert resp.status == 401
        async with client.post(url, json=COMPLETION, headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401
        async with client.post(url, json=COMPLETION, headers={"Authorization": "Bearer s3cret"}) as resp:
            assert resp.status == 200
        assert "Authorization" not in eng.seen[0].headers  # the router's key is not leaked upstream
        async with client.get(router.url + "/health") as resp:
            assert resp.status == 200


async def test_no_healthy_endpoint_gives_503_and_recovers() -> None:
    eng = EngineDouble()
    async with eng, running_router([eng], scrape=ScrapeConfig(interval=0.02, failure_threshold=1,
                                                             health_interval=0.02)) as router, \
            aiohttp.ClientSession() as client:
        eng.health_status = 503
        await until(lambda: health_is(client, router.url, 503))
        async with client.post(router.url + "/v1/completions", json=COMPLETION) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"  # the OpenAI SDKs wait that long before their retry
            assert (await resp.json())["error"]["type"] == "ServiceUnavailableError"
        async with client.post(router.url + "/v1/completions", data=b"{not json") as resp:
            assert resp.status == 400
            assert "Retry-After" not in resp.headers  # retrying the same bad request does not help
        eng.health_status = 200
        await until(lambda: health_is(client, router.url, 200))
        async with client.post(router.url + "/v1/completions", json=COMPLETION) as resp:
            assert resp.status == 200


async def test_router_metrics_endpoint() -> None:
    async with EngineDouble() as eng, running_router([eng], preset="least-load") as router, \
            aiohttp.ClientSession() as client:
        for _ in range(3):
            async with client.post(router.url + "/v1/completions", json=COMPLETION) as resp:
                assert resp.status == 200
        async with client.get(router.url + "/metrics") as resp:
            text = await resp.text()
        ep_id = eng.url.removeprefix("http://")
        assert f'kserve_llmd_router_requests_total{{endpoint="{ep_id}",outcome="ok"}} 3.0' in text
        assert "kserve_llmd_router_decision_latency_seconds_count 3.0" in text
        assert 'kserve_llmd_router_decision_latency_seconds_bucket{le="1e-05"}' in text
        assert f'kserve_llmd_router_inflight_requests{{endpoint="{ep_id}"}} 0.0' in text
        assert "kserve_llmd_router_upstream_ttft_seconds_count 3.0" in text


OPEN_CONNECTIONS = "kserve_llmd_router_client_connections"


async def test_connection_cap_answers_503_and_is_counted_while_served_clients_go_on() -> None:
    limits = LimitsConfig(max_connections=2)
    async with EngineDouble() as eng, running_router([eng], limits=limits) as router, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2)) as client:
        host, port = router.url.removeprefix("http://").split(":")
        held = [await asyncio.open_connection(host, int(port)) for _ in range(2)]  # two clients that only connect
        await until(lambda: router.metrics.registry.get_sample_value(OPEN_CONNECTIONS) == 2)  # both accepted
        async with client.get(router.url + "/health") as resp:
            assert resp.status == 503
            assert (await resp.json())["error"]["type"] == "ServiceUnavailableError"
        for _, writer in held:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for _, writer in held), return_exceptions=True)
        await until(lambda: router.metrics.registry.get_sample_value(OPEN_CONNECTIONS) == 0)
        async with client.post(router.url + "/v1/completions", json=COMPLETION) as resp:
            assert resp.status == 200
        refused = router.metrics.registry.get_sample_value("kserve_llmd_router_connections_refused_total",
                                                           {"answer": "503"})
        assert refused == 1.0


async def test_admin_port_answers_health_and_metrics_while_the_client_port_is_full() -> None:
    limits = LimitsConfig(max_connections=1)
    async with EngineDouble() as eng, running_router([eng], limits=limits, admin_port=0) as router, \
            aiohttp.ClientSession() as client:
        assert router.admin_url is not None
        host, port = router.url.removeprefix("http://").split(":")
        held = [await asyncio.open_connection(host, int(port)) for _ in range(2)]  # the served one + the 503 band
        try:
            await until(lambda: router.metrics.registry.get_sample_value(OPEN_CONNECTIONS) == 2)  # both accepted
            with pytest.raises(aiohttp.ClientError):  # the client port resets what comes next
                async with client.get(router.url + "/health") as resp:
                    await resp.read()
            async with client.get(router.admin_url + "/health") as resp:
                assert resp.status == 200
            async with client.get(router.admin_url + "/metrics") as resp:
                assert 'kserve_llmd_router_connections_refused_total{answer="reset"}' in await resp.text()
            refused = router.metrics.registry.get_sample_value("kserve_llmd_router_connections_refused_total",
                                                               {"answer": "reset"})
            assert refused is not None
            assert refused >= 1  # (aiohttp may try a reset request twice)
            async with client.get(router.admin_url + "/v1/models") as resp:
                assert resp.status == 404  # the admin port serves nothing else (and takes no bodies)
        finally:
            for _, writer in held:
                writer.close()
            await asyncio.gather(*(writer.wait_closed() for _, writer in held), return_exceptions=True)


async def test_no_admin_listener_unless_asked() -> None:
    async with EngineDouble() as eng, running_router([eng]) as router:
        assert router.admin_url is None
    with pytest.raises(ValueError, match="admin_port must differ from port"):
        RouterConfig(port=8000, admin_port=8000)


def test_endpoint_spec_parsing() -> None:
    spec = EndpointSpec.parse("http://10.0.0.1:8000/=tcp://10.0.0.1:5557")
    assert spec.url == "http://10.0.0.1:8000"
    assert spec.kv_events == "tcp://10.0.0.1:5557"
    assert EndpointSpec.parse("http://h:1", "decode").role == "decode"
    with pytest.raises(ValueError, match="http"):
        EndpointSpec.parse("h:1")
    assert free_port() > 0
