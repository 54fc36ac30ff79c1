"""Security: the bearer API key, no prompts or secrets in logs (even at DEBUG), endpoint hints only for known
endpoints, and nothing of the client's credentials forwarded upstream."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from pydantic import SecretStr
from rel_support import StubEngine, router_over

KEY = "sk-SECRET-KEY-0123456789"
PROMPT = "my password is SECRET-PROMPT-hunter2"


async def test_no_prompt_or_key_in_logs_even_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with StubEngine() as stub, StubEngine() as doomed:
        dead_url = doomed.url
        await doomed.__aexit__(None, None, None)  # refuses connections: the connect-failure path logs
        async with router_over([dead_url, stub.url], preset="precise-prefix", api_key=SecretStr(KEY)) as router, \
                aiohttp.ClientSession() as client:
            auth = {"Authorization": f"Bearer {KEY}"}
            chat = {"model": "m", "messages": [{"role": "user", "content": PROMPT}]}
            for path, body in (("/v1/completions", {"model": "m", "prompt": PROMPT, "max_tokens": 1}),
                               ("/v1/chat/completions", chat),
                               ("/v1/completions", {"model": "m", "prompt": PROMPT, "max_tokens": 1})):
                async with client.post(router.url + path, json=body, headers=auth) as resp:
                    assert resp.status == 200
            for headers, data in (({"Authorization": f"Bearer {KEY}x"}, b"{}"),  # wrong key
                                  (auth, b'{"model": "m", "prompt": "' + PROMPT.encode() + b'",'),  # bad JSON
                                  (auth, b'{"model": "' + PROMPT.encode() + b'"}')):  # unknown model
                async with client.post(router.url + "/v1/completions", data=data, headers=headers) as resp:
                    assert resp.status in (400, 401, 404, 503)  # 503: a model list is unknown (dead endpoint)
                    text = await resp.text()
                    assert KEY not in text
    assert any(r.name.startswith("kserve_llmd") for r in caplog.records)  # the router did log (config, failures)
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert "SECRET-PROMPT" not in text, (record.name, text)
        assert KEY not in text, (record.name, text)
    for seen in stub.headers:  # the router's key is consumed, never forwarded to the engine
        assert "authorization" not in seen


async def test_api_key_is_required_on_every_route_that_serves_data() -> None:
    async with StubEngine() as stub, router_over([stub.url], api_key=SecretStr(KEY)) as router, \
            aiohttp.ClientSession() as client:
        body = {"model": "m", "prompt": "x"}
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": f"Basic {KEY}"},
                        {"Authorization": f"Bearer {KEY[:-1]}"}):
            async with client.post(router.url + "/v1/completions", json=body, headers=headers) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["type"]
            async with client.get(router.url + "/v1/models", headers=headers) as resp:
                assert resp.status == 401
        async with client.post(router.url + "/v1/completions", json=body,
                               headers={"Authorization": f"bearer {KEY}"}) as resp:
            assert resp.status == 200
        assert len(stub.seen) == 1  # refused requests never reached the engine


async def test_endpoint_hint_only_for_known_endpoints() -> None:
    async with StubEngine() as stub, router_over([stub.url]) as router, aiohttp.ClientSession() as client:
        hint = {"x-prefiller-host-port": "169.254.169.254:80"}  # a metadata service, not an endpoint
        async with client.post(router.url + "/v1/completions", json={"model": "m", "prompt": "x"},
                               headers=hint) as resp:
            await resp.read()
            assert resp.status in (200, 403)
        for seen in stub.headers:  # never passed on for someone else to trust
            assert "x-prefiller-host-port" not in seen
