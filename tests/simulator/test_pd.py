"""Prefill/decode disaggregation between two engines over real loopback HTTP (NixlConnector protocol)."""

from __future__ import annotations

import aiohttp

from tests.simulator.conftest import complete, unpack, words

PREFILL = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
           "remote_block_ids": None, "remote_host": None, "remote_port": None}


async def _pd_pair(make_cluster):  # type: ignore[no-untyped-def]
    prefill = await make_cluster(role="prefill", seed=1)
    decode = await make_cluster(role="decode", seed=2)
    return prefill.engines[0], decode.engines[0]


async def test_round_trip(make_cluster, subscriber, http: aiohttp.ClientSession) -> None:
    p, d = await _pd_pair(make_cluster)
    sub = subscriber(d.kv_events)
    prompt = words(10, "pd")
    async with http.post(p.url + "/v1/completions", headers={"X-Request-Id": "rid-1"},
                         json={"model": "sim-model", "prompt": prompt, "max_tokens": 1,
                               "kv_transfer_params": PREFILL}) as resp:
        assert resp.status == 200
        first = await resp.json()
    params = first["kv_transfer_params"]
    assert first["choices"][0]["finish_reason"] == "length"
    assert params["do_remote_prefill"] is True
    assert params["do_remote_decode"] is False
    assert params["remote_request_id"] == "rid-1"
    assert params["remote_host"] == "127.0.0.1"
    assert p.url.endswith(f":{params['remote_port']}")
    assert params["tp_size"] == 1
    assert isinstance(params["remote_engine_id"], str)
    assert len(params["remote_block_ids"]) == 3  # 10 + 1 tokens in blocks of 4
    # The subscription has to be live before the decode stores the pulled blocks.
    await sub.sync(http, d.url)
    async with http.post(d.url + "/v1/completions", headers={"X-Request-Id": "rid-1"},
                         json={"model": "sim-model", "prompt": prompt, "max_tokens": 5,
                               "kv_transfer_params": params}) as resp:
        assert resp.status == 200
        second = await resp.json()
    assert second["usage"]["completion_tokens"] == 5
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == 9  # all but the recomputed last token
    stored = unpack((await sub.recv())[2])[1][0]
    assert stored["type"] == "BlockStored"
    assert len(stored["block_hashes"]) == 2
    # The lease was released by the pull: a second decode with the same params fails (vLLM's default policy).
    again = await complete(http, d.url, prompt, max_tokens=2, kv_transfer_params=params, expect=400)
    assert "unknown or expired" in again["error"]["message"]


async def test_streaming_prefill_is_rejected(make_cluster, http: aiohttp.ClientSession) -> None:
    p, _ = await _pd_pair(make_cluster)
    body = {"model": "sim-model", "prompt": "a b c", "max_tokens": 1, "stream": True, "kv_transfer_params": PREFILL}
    async with http.post(p.url + "/v1/completions", json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "stream"


async def test_roles_refuse_the_other_leg(make_cluster, http: aiohttp.ClientSession) -> None:
    p, d = await _pd_pair(make_cluster)
    await complete(http, d.url, "a b c", max_tokens=1, kv_transfer_params=PREFILL, expect=400)
    await complete(http, p.url, "a b c", max_tokens=1, expect=200)  # plain requests are served by any role


async def test_expired_lease_fails_or_recomputes(make_cluster, http: aiohttp.ClientSession) -> None:
    prefill = (await make_cluster(kv_lease_seconds=0.0)).engines[0]
    strict = (await make_cluster()).engines[0]
    lenient = (await make_cluster(kv_load_failure_policy="recompute")).engines[0]
    prompt = words(9, "exp")
    first = await complete(http, prefill.url, prompt, max_tokens=1, kv_transfer_params=PREFILL)
    params = first["kv_transfer_params"]
    failed = await complete(http, strict.url, prompt, max_tokens=2, kv_transfer_params=params, expect=400)
    assert failed["error"]["type"] == "KVTransferError"
    recomputed = await complete(http, lenient.url, prompt, max_tokens=2, kv_transfer_params=params)
    assert recomputed["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert recomputed["usage"]["completion_tokens"] == 2


async def test_unreachable_prefill_is_a_clear_error(make_cluster, http: aiohttp.ClientSession) -> None:
    d = (await make_cluster(role="decode")).engines[0]
    params = {"do_remote_prefill": True, "remote_host": "127.0.0.1", "remote_port": "nope"}
    bad = await complete(http, d.url, "a b c", kv_transfer_params=params, expect=400)
    assert bad["error"]["param"] == "kv_transfer_params"
