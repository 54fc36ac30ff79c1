"""P/D on the decode side: pull a prefill engine's leased KV blocks over a REAL loopback HTTP call.

Given the prefill's ``kv_transfer_params`` (``remote_host``, ``remote_port`` = the prefill engine's HTTP port,
``remote_request_id``, ``remote_engine_id``), ``pull_remote_kv``:

1. ``POST http://{remote_host}:{remote_port}/_sim/kv_pull`` with ``{transfer_id, request_id, engine_id}``; the
   prefill answers ``{"token_ids": [...], "block_ids": [...]}`` and frees its lease (or 404 when the transfer is
   unknown or expired);
2. checks the pulled tokens are this request's prompt;
3. waits ``transfer(K) × time_scale`` where ``K = prompt - 1 - local prefix-cache hit tokens``;
4. marks ``prompt - 1`` tokens as computed externally (the last prompt token is recomputed to get logits); the
   scheduler then stores the pulled blocks locally, which publishes ``BlockStored``.

On failure the ``kv_load_failure_policy`` decides, as in vLLM: ``fail`` (vLLM's default) → ``KVTransferError``;
``recompute`` → the decode engine prefills the prompt itself.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import orjson

from kserve_llmd.errors import KVTransferError
from kserve_llmd.simulator.engine import SimEngine
from kserve_llmd.simulator.request import SimRequest

log = logging.getLogger(__name__)

PULL_PATH = "/_sim/kv_pull"


def prefill_params(engine: SimEngine, transfer_id: str, block_ids: list[int]) -> dict[str, Any]:
    """The ``kv_transfer_params`` a prefill returns (NixlConnector ``request_finished`` fields)."""
    return {
        "do_remote_prefill": True,
        "do_remote_decode": False,
        "remote_block_ids": block_ids,
        "remote_engine_id": engine.engine_id,
        "remote_request_id": transfer_id,
        "remote_host": engine.config.host,
        "remote_port": engine.port,
        "tp_size": 1,
    }


async def pull_remote_kv(engine: SimEngine, session: aiohttp.ClientSession, req: SimRequest,
                         params: dict[str, Any]) -> None:
    try:
        token_ids = await _pull(session, req, params)
        if token_ids != req.prompt_token_ids:
            raise KVTransferError(
                f"KV transfer {params.get('remote_request_id')!r} holds {len(token_ids)} tokens that are not this "
                f"request's prompt ({req.num_prompt_tokens} tokens)", status=400, param="kv_transfer_params")
    except KVTransferError as exc:
        if engine.config.kv_load_failure_policy == "fail":
            raise
        log.warning("KV load failed, recomputing the prompt locally: %s", exc.message)
        return
    external = max(0, req.num_prompt_tokens - 1 - engine.local_hit_tokens(req))
    await engine.sleep(engine.timing.transfer_time(external))
    req.external_tokens = max(0, req.num_prompt_tokens - 1)


async def _pull(session: aiohttp.ClientSession, req: SimRequest, params: dict[str, Any]) -> list[int]:
    host, port = params.get("remote_host"), params.get("remote_port")
    if not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool):
        raise KVTransferError("kv_transfer_params needs remote_host (string) and remote_port (int)", status=400,
                              param="kv_transfer_params")
    transfer_id = params.get("remote_request_id")
    body = {"transfer_id": transfer_id if isinstance(transfer_id, str) else None, "request_id": req.request_id,
            "engine_id": params.get("remote_engine_id")}
    url = f"http://{host}:{port}{PULL_PATH}"
    try:
        async with session.post(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, OSError) as exc:
        raise KVTransferError(f"cannot reach prefill engine {host}:{port}: {exc}", status=502) from None
    if status != 200:
        raise KVTransferError(f"KV transfer {body['transfer_id'] or req.request_id!r} failed at {host}:{port}: "
                              f"{raw.decode(errors='replace')[:300]}", status=400, param="kv_transfer_params")
    data = orjson.loads(raw)
    token_ids = data.get("token_ids") if isinstance(data, dict) else None
    if not isinstance(token_ids, list):
        raise KVTransferError(f"prefill engine {host}:{port} answered a malformed pull", status=502)
    return token_ids
