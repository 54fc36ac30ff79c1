"""The OpenAI / vLLM HTTP surface of one engine, over real loopback HTTP."""

from __future__ import annotations

import aiohttp
import orjson

from tests.simulator.conftest import complete, words


async def test_completion_shape_and_prefix_cache_hit(make_cluster, http: aiohttp.ClientSession) -> None:
    cluster = await make_cluster()
    url = cluster.engines[0].url
    first = await complete(http, url, words(10), max_tokens=5)
    assert first["object"] == "text_completion"
    assert first["id"].startswith("cmpl-")
    assert first["model"] == "sim-model"
    choice = first["choices"][0]
    assert choice["index"] == 0
    assert choice["logprobs"] is None
    assert choice["finish_reason"] == "length"
    assert len(choice["text"].split()) == 5
    assert first["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                              "prompt_tokens_details": {"cached_tokens": 0}}
    second = await complete(http, url, words(10), max_tokens=5)
    # block size 4: two full blocks (8 tokens) hit; the third block is partial.
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == 8
    # exactly two blocks of prompt: the last token is always recomputed, so only one block may hit.
    await complete(http, url, words(8, "x"), max_tokens=1)
    again = await complete(http, url, words(8, "x"), max_tokens=1)
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == 4


async def test_cache_salt_splits_the_cache(make_cluster, http: aiohttp.ClientSession) -> None:
    url = (await make_cluster()).engines[0].url
    await complete(http, url, words(10), cache_salt="alice")
    bob = await complete(http, url, words(10), cache_salt="bob")
    alice = await complete(http, url, words(10), cache_salt="alice")
    assert bob["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert alice["usage"]["prompt_tokens_details"]["cached_tokens"] == 8


async def test_chat_completion_and_request_id_header(make_cluster, http: aiohttp.ClientSession) -> None:
    url = (await make_cluster()).engines[0].url
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "hello there"}],
            "max_completion_tokens": 3, "priority": 1, "min_tokens": 1, "ignore_eos": True}
    async with http.post(url + "/v1/chat/completions", json=body, headers={"X-Request-Id": "abc-123"}) as resp:
        assert resp.status == 200
        assert resp.headers["X-Request-Id"] == "abc-123"
        data = await resp.json()
    assert data["id"] == "chatcmpl-abc-123"
    assert data["object"] == "chat.completion"
    message = data["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert len(message["content"].split()) == 3
    assert data["usage"]["completion_tokens"] == 3


async def _sse(resp: aiohttp.ClientResponse) -> list[bytes]:
    raw = await resp.read()
    assert raw.endswith(b"data: [DONE]\n\n")
    events = [e for e in raw.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events)
    return [e[len(b"data: "):] for e in events]


async def test_streaming_completion_with_usage(make_cluster, http: aiohttp.ClientSession) -> None:
    url = (await make_cluster()).engines[0].url
    body = {"model": "sim-model", "prompt": words(6), "max_tokens": 4, "stream": True,
            "stream_options": {"include_usage": True}}
    async with http.post(url + "/v1/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = await _sse(resp)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    token_chunks, usage_chunk = chunks[:-1], chunks[-1]
    assert len(token_chunks) == 4
    assert all(c["object"] == "text_completion" and c["choices"][0]["index"] == 0 for c in token_chunks)
    assert [c["choices"][0]["finish_reason"] for c in token_chunks] == [None, None, None, "length"]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 4
    assert usage_chunk["usage"]["prompt_tokens"] == 6
    text = "".join(c["choices"][0]["text"] for c in token_chunks)
    assert len(text.split()) == 4


async def test_streaming_chat_without_usage(make_cluster, http: aiohttp.ClientSession) -> None:
    url = (await make_cluster()).engines[0].url
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True}
    async with http.post(url + "/v1/chat/completions", json=body) as resp:
        events = await _sse(resp)
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_stop_string_finishes_with_stop(make_cluster, http: aiohttp.ClientSession) -> None:
    url = (await make_cluster()).engines[0].url
    probe = await complete(http, url, words(3), max_tokens=6)
    third = probe["choices"][0]["text"].split()[2]
    # Same seed and same request order on a fresh engine: the same tokens come out.
    url2 = (await make_cluster()).engines[0].url
    stopped = await complete(http, url2, words(3), max_tokens=6, stop=[third])
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stopped["choices"][0]["stop_reason"] == third
    assert stopped["choices"][0]["text"].split() == probe["choices"][0]["text"].split()[:2]


async def test_models_tokenize_detokenize_health(make_cluster, http: aiohttp.ClientSession) -> None:
    cluster = await make_cluster(max_model_len=512)
    url = cluster.engines[0].url
    async with http.get(url + "/v1/models") as resp:
        models = await resp.json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["sim-model"]
    assert models["data"][0]["max_model_len"] == 512
    async with http.post(url + "/tokenize", json={"model": "sim-model", "prompt": "bo ca da"}) as resp:
        tok = await resp.json()
    assert tok["count"] == 3
    assert tok["max_model_len"] == 512
    async with http.post(url + "/detokenize", json={"model": "sim-model", "tokens": tok["tokens"]}) as resp:
        assert (await resp.json())["prompt"] == "bo ca da"
    async with http.post(url + "/tokenize", json={"messages": [{"role": "user", "content": "a b"}]}) as resp:
        assert (await resp.json())["count"] > 2
    async with http.get(url + "/health") as resp:
        assert resp.status == 200


async def test_kv_event_sources_is_a_bare_array(make_cluster, http: aiohttp.ClientSession) -> None:
    cluster = await make_cluster(engines=2)
    for info in cluster.engines:
        async with http.get(info.url + "/kv_event_sources") as resp:
            sources = await resp.json()
        port = info.url.rsplit(":", 1)[1]
        assert sources == [{"data_parallel_rank": 0, "endpoint": info.kv_events, "replay_endpoint": info.replay,
                            "topic": f"kv@127.0.0.1:{port}@sim-model"}]
    assert len({e.url for e in cluster.engines}) == 2
    assert len({e.kv_events for e in cluster.engines}) == 2


async def _running_and_usage(http: aiohttp.ClientSession, url: str) -> tuple[float, float, float]:
    from prometheus_client.parser import text_string_to_metric_families

    async with http.get(url + "/metrics") as resp:
        text = await resp.text()
    values = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("vllm:num_requests_running", "vllm:kv_cache_usage_perc") or (
                    s.name == "vllm:request_success_total" and s.labels["finished_reason"] == "abort"):
                values[s.name] = s.value
    return (values["vllm:num_requests_running"], values["vllm:kv_cache_usage_perc"],
            values["vllm:request_success_total"])


async def test_client_disconnect_aborts_the_request(make_cluster, http: aiohttp.ClientSession) -> None:
    import asyncio

    # time-scale 1 with the tiny profile: 0.1 ms per decode step, so 4000 tokens keep the request busy a while.
    url = (await make_cluster(time_scale=1.0, max_model_len=8192, kv_cache_size=2048)).engines[0].url
    body = {"model": "sim-model", "prompt": words(5), "max_tokens": 4000, "stream": True}
    resp = await http.post(url + "/v1/completions", json=body)
    assert (await resp.content.readline()).startswith(b"data: ")
    running, usage, _ = await _running_and_usage(http, url)
    assert running == 1
    assert usage > 0
    resp.close()  # drop the connection mid-stream
    for _ in range(500):  # wait for the engine to notice (bounded, not a timing assertion)
        running, usage, aborted = await _running_and_usage(http, url)
        if running == 0:
            break
        await asyncio.sleep(0.01)
    assert (running, usage, aborted) == (0, 0, 1)
