"""The HTTP API of one engine (aiohttp): vLLM's OpenAI routes plus the simulator's internal P/D pull.

Routes: ``POST /v1/completions``, ``POST /v1/chat/completions`` (JSON or SSE), ``GET /v1/models``,
``POST /tokenize``, ``POST /detokenize``, ``GET /health``, ``GET /metrics``, ``POST /reset_prefix_cache``,
``GET /kv_event_sources`` (vLLM 0.33: a bare JSON array), ``POST /_sim/kv_pull`` (P/D, see ``pd.py``).
Every error leaves through ``kserve_llmd.http.error_response``; a client that disconnects aborts its request.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web

from kserve_llmd.errors import InvalidRequestError, KserveLlmdError, KVTransferError
from kserve_llmd.http import SSE_HEADERS, error_response, json_response, read_json_object
from kserve_llmd.simulator import responses as R
from kserve_llmd.simulator.engine import SimEngine
from kserve_llmd.simulator.failures import FailureInjector
from kserve_llmd.simulator.pd import PULL_PATH, prefill_params, pull_remote_kv
from kserve_llmd.simulator.protocol import Kind, ParsedRequest, check_model, parse_request
from kserve_llmd.simulator.request import SimRequest
from kserve_llmd.simulator.text import TextStream, final_text


class EngineAPI:
    def __init__(self, engine: SimEngine, session: aiohttp.ClientSession) -> None:
        self.engine = engine
        self.config = engine.config
        self.session = session
        self.failures = FailureInjector(engine.config.failure_injection_rate, engine.config.failure_types,
                                        engine.failure_rng, engine.config.model)
        self.created = int(time.time())

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/tokenize", self.tokenize)
        app.router.add_post("/detokenize", self.detokenize)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/reset_prefix_cache", self.reset_prefix_cache)
        app.router.add_get("/kv_event_sources", self.kv_event_sources)
        app.router.add_post(PULL_PATH, self.kv_pull)
        return app

    # ------------------------------------------------------------------ generation
    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "completion")

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "chat")

    async def _admit(self, request: web.Request, kind: Kind) -> tuple[ParsedRequest, SimRequest]:
        self.failures.maybe_fail()
        cfg = self.config
        body = await read_json_object(request, cfg.max_body_bytes)
        parsed = parse_request(body, kind, served_model=cfg.model, tokenizer=self.engine.tokenizer,
                               max_model_len=cfg.max_model_len, default_max_tokens=cfg.default_max_tokens)
        request_id = request.headers.get("X-Request-Id") or parsed.request_id or uuid.uuid4().hex
        req = SimRequest(request_id=request_id, prompt_token_ids=parsed.prompt_token_ids, sampling=parsed.sampling,
                         arrival=self.engine.clock(), cache_salt=parsed.cache_salt, stream=parsed.stream)
        params = parsed.kv_transfer_params
        if params and params.get("do_remote_decode"):
            if cfg.role == "decode":
                raise InvalidRequestError("this engine has role decode and cannot serve a prefill (do_remote_decode)",
                                          param="kv_transfer_params")
            if parsed.stream:
                raise InvalidRequestError("Prefill does not support streaming", param="stream")
            req.do_remote_decode = True
        elif params and params.get("do_remote_prefill"):
            if cfg.role == "prefill":
                raise InvalidRequestError("this engine has role prefill and cannot serve a decode (do_remote_prefill)",
                                          param="kv_transfer_params")
            await pull_remote_kv(self.engine, self.session, req, params)
        self.engine.submit(req)
        return parsed, req

    async def _generate(self, request: web.Request, kind: Kind) -> web.StreamResponse:
        try:
            parsed, req = await self._admit(request, kind)
        except KserveLlmdError as exc:
            return error_response(exc)
        headers = {"X-Request-Id": req.request_id}
        if parsed.stream:
            return await self._stream(request, parsed, req, kind, headers)
        assert req.done is not None
        try:
            await req.done
        except asyncio.CancelledError:
            self.engine.abort(req)
            raise
        if req.error is not None:
            return error_response(_as_error(req.error))
        kv_params = prefill_params(self.engine, *req.leased) if req.leased is not None else None
        body = R.full_response(kind, R.response_id(kind, req.request_id), int(time.time()), parsed.model,
                               final_text(self.engine.tokenizer, req), req.finish_reason, req.stop_reason,
                               self._usage(req), kv_params)
        return json_response(body, headers=headers)

    def _usage(self, req: SimRequest) -> dict[str, Any]:
        return R.usage(req.num_prompt_tokens, len(req.output_token_ids), req.num_cached_tokens)

    async def _stream(self, request: web.Request, parsed: ParsedRequest, req: SimRequest, kind: Kind,
                      headers: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={**SSE_HEADERS, **headers})
        rid, created, model = R.response_id(kind, req.request_id), int(time.time()), parsed.model
        text = TextStream(self.engine.tokenizer, req)
        changed = req.changed
        assert changed is not None
        try:
            await resp.prepare(request)
            if kind == "chat":
                await resp.write(R.chunk(kind, rid, created, model, "", role=True))
            while True:
                n_out = len(req.output_token_ids)
                if text.sent_tokens < n_out:
                    buf = []
                    while text.sent_tokens < n_out:
                        delta = text.next_delta()
                        last = req.finished and text.sent_tokens == n_out
                        use = self._usage(req) if parsed.continuous_usage else None
                        buf.append(R.chunk(kind, rid, created, model, delta,
                                           req.finish_reason if last else None,
                                           req.stop_reason if last else None, use))
                    await resp.write(b"".join(buf))
                    continue
                if req.finished:
                    break
                changed.clear()
                await changed.wait()
            if req.error is not None:
                await resp.write(R.error_event(_as_error(req.error).to_openai()))
            elif parsed.include_usage:
                await resp.write(R.chunk(kind, rid, created, model, None, use=self._usage(req)))
            await resp.write(R.DONE)
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self.engine.abort(req)
            raise
        return resp

    # ------------------------------------------------------------------ the rest of vLLM's surface
    async def models(self, request: web.Request) -> web.Response:
        cfg = self.config
        card = {"id": cfg.model, "object": "model", "created": self.created, "owned_by": "vllm", "root": cfg.model,
                "parent": None, "max_model_len": cfg.max_model_len, "permission": []}
        return json_response({"object": "list", "data": [card]})

    async def tokenize(self, request: web.Request) -> web.Response:
        try:
            body = await read_json_object(request, self.config.max_body_bytes)
            check_model(body, self.config.model)
            tok = self.engine.tokenizer
            if "messages" in body:
                if not isinstance(body["messages"], list):
                    raise InvalidRequestError("messages must be a list", param="messages")
                ids = tok.encode_chat(body["messages"])
            elif isinstance(body.get("prompt"), str):
                ids = tok.encode(body["prompt"], add_special_tokens=bool(body.get("add_special_tokens", True)))
            else:
                raise InvalidRequestError("tokenize needs a string prompt or messages", param="prompt")
        except KserveLlmdError as exc:
            return error_response(exc)
        return json_response({"count": len(ids), "max_model_len": self.config.max_model_len, "tokens": ids,
                              "token_strs": None})

    async def detokenize(self, request: web.Request) -> web.Response:
        try:
            body = await read_json_object(request, self.config.max_body_bytes)
            check_model(body, self.config.model)
            tokens = body.get("tokens")
            if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                       for t in tokens):
                raise InvalidRequestError("tokens must be a list of non-negative integers", param="tokens")
        except KserveLlmdError as exc:
            return error_response(exc)
        return json_response({"prompt": self.engine.tokenizer.decode(tokens)})

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.engine.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def reset_prefix_cache(self, request: web.Request) -> web.Response:
        if not self.engine.reset_prefix_cache():
            return error_response(KserveLlmdError("prefix cache not reset: blocks are in use"))
        return web.Response(status=200)

    async def kv_event_sources(self, request: web.Request) -> web.Response:
        pub = self.engine.publisher
        return json_response([{"data_parallel_rank": 0, "endpoint": pub.endpoint,
                               "replay_endpoint": pub.replay_endpoint, "topic": pub.topic}])

    async def kv_pull(self, request: web.Request) -> web.Response:
        try:
            body = await read_json_object(request, 64 * 1024)
            engine_id = body.get("engine_id")
            if engine_id is not None and engine_id != self.engine.engine_id:
                raise KVTransferError(f"engine {engine_id!r} is not this engine ({self.engine.engine_id})",
                                      status=404)
            tid, rid = body.get("transfer_id"), body.get("request_id")
            lease = self.engine.leases.pull(tid if isinstance(tid, str) else None,
                                            rid if isinstance(rid, str) else None)
            if lease is None:
                raise KVTransferError(f"unknown or expired KV transfer {tid or rid!r}", status=404)
        except KserveLlmdError as exc:
            return error_response(exc)
        return json_response({"token_ids": lease.token_ids, "block_ids": [b.block_id for b in lease.blocks]})


def _as_error(exc: BaseException) -> KserveLlmdError:
    return exc if isinstance(exc, KserveLlmdError) else KserveLlmdError(f"engine error: {exc}")
