"""Bad input never crashes an engine: every case gets an OpenAI-shaped error with the right status."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.simulator.conftest import complete, words


def _is_openai_error(body: dict[str, Any], status: int) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == status
    assert body["error"]["message"]


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"model": "other", "prompt": "a"}, 404, "The model `other` does not exist."),
    ({"prompt": "a", "max_tokens": 0}, 400, "max_tokens must be at least 1, got 0."),
    ({"prompt": "a", "max_tokens": -5}, 400, "at least 1"),
    ({"prompt": "a", "max_tokens": 10**12}, 400, "'max_tokens' or 'max_completion_tokens' is too large"),
    ({"prompt": "a", "max_tokens": "ten"}, 400, "max_tokens must be an integer"),
    ({"prompt": "a", "max_tokens": True}, 400, "max_tokens must be an integer"),
    ({"prompt": 5}, 400, "prompt must be"),
    ({}, 400, "prompt is required"),
    ({"prompt": "a", "stream": "yes"}, 400, "stream must be a boolean"),
    ({"prompt": "a", "stream_options": {"include_usage": True}}, 400, "Stream options"),
    ({"prompt": "a", "stop": 3}, 400, "stop must be"),
    ({"prompt": "a", "cache_salt": ""}, 400, "cache_salt"),
    ({"prompt": "a", "kv_transfer_params": "x"}, 400, "kv_transfer_params must be an object"),
    ({"prompt": "a", "n": 2}, 400, "n=1"),
    ({"prompt": "a", "temperature": "hot"}, 400, "temperature must be a number"),
])
async def test_bad_completion_bodies(make_cluster, http: aiohttp.ClientSession, body: dict[str, Any], status: int,
                                     needle: str) -> None:
    url = (await make_cluster(max_model_len=64)).engines[0].url
    async with http.post(url + "/v1/completions", json=body) as resp:
        data = await resp.json()
        assert resp.status == status, data
    _is_openai_error(data, status)
    assert needle in data["error"]["message"]


async def test_prompt_over_max_model_len(make_cluster, http: aiohttp.ClientSession) -> None:
    url = (await make_cluster(max_model_len=16)).engines[0].url
    data = await complete(http, url, words(20), expect=400)
    assert data["error"]["message"].startswith("This model's maximum context length is 16 tokens. However, your "
                                                "request has 20 input tokens.")


async def test_malformed_json_non_object_and_oversized(make_cluster, http: aiohttp.ClientSession) -> None:
    url = (await make_cluster(max_body_bytes=2048)).engines[0].url + "/v1/chat/completions"
    for raw, status in [(b"{not json", 400), (b"[1, 2]", 400), (b'{"messages": "hi"}', 400),
                        (b'{"messages": [{"content": "no role"}]}', 400), (b"x" * 5000, 413)]:
        async with http.post(url, data=raw, headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == status, raw[:20]
            _is_openai_error(await resp.json(), status)
    # The engine is still healthy and serving.
    async with http.post(url, json={"messages": [{"role": "user", "content": "ok"}], "max_tokens": 1}) as resp:
        assert resp.status == 200


async def test_failure_injection_is_seeded_and_openai_shaped(make_cluster, http: aiohttp.ClientSession) -> None:
    async def statuses(seed: int) -> list[int]:
        url = (await make_cluster(failure_injection_rate=0.5, failure_types=("rate_limit", "server_error"),
                                  seed=seed)).engines[0].url
        out = []
        for _ in range(16):
            async with http.post(url + "/v1/completions", json={"prompt": "a b", "max_tokens": 1}) as resp:
                body = await resp.json()
                if resp.status != 200:
                    _is_openai_error(body, resp.status)
                    assert "injected" in body["error"]["message"]
                out.append(resp.status)
        return out

    first, same = await statuses(3), await statuses(3)
    assert first == same
    assert set(first) == {200, 429, 500}


async def test_all_failures_when_rate_is_one(make_cluster, http: aiohttp.ClientSession) -> None:
    url = (await make_cluster(failure_injection_rate=1.0, failure_types=("model_not_found",))).engines[0].url
    data = await complete(http, url, "a", expect=404)
    assert data["error"]["type"] == "NotFoundError"


async def test_request_larger_than_the_whole_cache_fails_instead_of_hanging(make_cluster,
                                                                            http: aiohttp.ClientSession) -> None:
    url = (await make_cluster(kv_cache_size=4)).engines[0].url  # 16 tokens of KV in all
    data = await complete(http, url, words(30), max_tokens=1, expect=500)
    assert "more KV blocks" in data["error"]["message"]
    await complete(http, url, words(5), max_tokens=2)  # and the engine keeps serving
