"""P/D disaggregation between two REAL vLLM engines on CPU with NixlConnector (kv_buffer_device=cpu, UCX).

The two-step flow of REFERENCE 1.4: prefill with max_tokens=1 and do_remote_decode, then the original body plus
the returned kv_transfer_params on the decode engine. Skips when nixl is not in the real-vLLM venv.
Run by hand: bash scripts/real-vllm-setup && .venv/bin/pytest -m vllm tests/vllm
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from kserve_llmd.realvllm import MODEL_NAME, RealVllm, free_ports, nixl_available
from kserve_llmd.realvllm.probe import eventually, metric_families, post_json, replay_batches, sample_value
from kserve_llmd.wire.kv_events import BlockStored, decode_batch

_REASON = nixl_available()
pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(600),
]

KV_TRANSFER = json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both", "kv_buffer_device": "cpu"})


def nixl_engine(core: str, side_port: int) -> RealVllm:
    # With a kv-transfer-config vLLM reserves 2 cores (scheduler + NIXL): on a 2-core machine both engines then bind
    # their OpenMP threads to every core; pin each engine to its own core instead.
    env = {"VLLM_CPU_OMP_THREADS_BIND": core, "VLLM_NIXL_SIDE_CHANNEL_HOST": "127.0.0.1",
           "VLLM_NIXL_SIDE_CHANNEL_PORT": str(side_port)}
    return RealVllm(extra_args=["--kv-transfer-config", KV_TRANSFER], env=env, startup_timeout=400)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pair() -> AsyncIterator[tuple[RealVllm, RealVllm]]:
    p_side, d_side = free_ports(2)
    async with nixl_engine("0", p_side) as prefill, nixl_engine("1", d_side) as decode:
        yield prefill, decode


async def complete(url: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
    status, out = await post_json(url + "/v1/completions", body, headers={"X-Request-Id": request_id})
    assert status == 200, out
    assert isinstance(out, dict)
    return out


async def test_two_step_nixl_transfer(pair: tuple[RealVllm, RealVllm]) -> None:
    prefill, decode = pair
    body = {"model": MODEL_NAME, "prompt": "The quick brown fox jumps over the lazy dog. " * 8, "max_tokens": 20,
            "temperature": 0, "ignore_eos": True}
    pre = dict(body, max_tokens=1, stream=False, kv_transfer_params={
        "do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None, "remote_block_ids": None,
        "remote_host": None, "remote_port": None})
    first = await complete(prefill.url, pre, "pd-test-1")
    assert first["id"] == "cmpl-pd-test-1"
    ktp = first["kv_transfer_params"]
    assert ktp["do_remote_prefill"] is True
    assert ktp["do_remote_decode"] is False
    assert ktp["remote_host"] == "127.0.0.1"
    assert isinstance(ktp["remote_port"], int)
    assert ktp["remote_request_id"].startswith("cmpl-pd-test-1")
    assert ktp["transfer_mode"] == "pull"
    assert ktp["tp_size"] == 1
    n_prompt = first["usage"]["prompt_tokens"]
    assert ktp["remote_num_tokens"] == n_prompt
    assert [len(b) for b in ktp["remote_block_ids"]] == [-(-n_prompt // 32)]

    out = await complete(decode.url, dict(body, kv_transfer_params=ktp), "pd-test-1")
    reference = await complete(prefill.url, body, "pd-test-ref")
    assert out["choices"][0]["text"] == reference["choices"][0]["text"]
    assert out["kv_transfer_params"] is None

    fams = await metric_families(decode.url)
    by_source = {s.labels["source"]: s.value for s in fams["vllm:prompt_tokens_by_source"].samples
                 if s.name == "vllm:prompt_tokens_by_source_total"}
    assert by_source["external_kv_transfer"] >= 64
    assert sample_value(fams, "vllm:nixl_xfer_time_seconds", "vllm:nixl_xfer_time_seconds_count") >= 1

    # The decode engine advertises the pulled prompt blocks under the same engine hashes as the prefill engine.
    async def hashes(engine: RealVllm) -> set[int]:
        return {h for f in await replay_batches(engine.replay, 0) for e in decode_batch(f[2]).events
                if isinstance(e, BlockStored) and e.parent_block_hash is None for h in e.block_hashes}

    pre_hashes: set[int] = set()

    async def shared() -> bool:
        pre_hashes.update(await hashes(prefill))
        return bool(pre_hashes) and pre_hashes <= await hashes(decode)

    assert await eventually(shared)
