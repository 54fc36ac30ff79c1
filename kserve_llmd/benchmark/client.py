"""The streaming OpenAI client: sends one ``BenchRequest`` and measures it as vLLM's ``benchmark_serving`` does.

- start: the clock just before the request is written; every other time is relative to it.
- TTFT: arrival of the first SSE chunk whose choice carries text (``text`` for completions, ``delta.content`` for
  chat). Role-only and usage-only chunks do not count.
- ITL: one sample per later text-carrying chunk: the gap since the previous one. A chunk may hold several tokens
  when the engine batches them, so the token count comes from ``usage`` and TPOT is computed per token.
- E2E: arrival of ``data: [DONE]`` (or the end of the stream).
- tokens: ``usage.prompt_tokens``, ``usage.prompt_tokens_details.cached_tokens``, ``usage.completion_tokens`` from
  the final usage chunk (``stream_options.include_usage``); without usage the output count falls back to the number
  of text chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from kserve_llmd.benchmark.records import BenchRequest, NsClock, RequestRecord
from kserve_llmd.router.forward import ROUTED_TO

_ERROR_CHARS = 200


def _chunk_text(chunk: dict[str, Any]) -> str:
    choices = chunk.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        return ""
    choice = choices[0]
    text = choice.get("text")
    if isinstance(text, str):
        return text
    delta = choice.get("delta")
    if isinstance(delta, dict):
        content = delta.get("content") or delta.get("reasoning_content")
        if isinstance(content, str):
            return content
    return ""


def _error_message(payload: object) -> str:
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            return str(error.get("message") or error)[:_ERROR_CHARS]
        return str(error)[:_ERROR_CHARS]
    return str(payload)[:_ERROR_CHARS]


def _apply_usage(record: RequestRecord, usage: dict[str, Any]) -> None:
    if isinstance(usage.get("prompt_tokens"), int):
        record.prompt_tokens = usage["prompt_tokens"]
    if isinstance(usage.get("completion_tokens"), int):
        record.output_tokens = usage["completion_tokens"]
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        record.cached_tokens = details["cached_tokens"]


async def _read_stream(response: aiohttp.ClientResponse, record: RequestRecord, clock: NsClock, start: int) -> int:
    """Consume the SSE body; returns the end time. Sets the error on the record for in-stream errors."""
    last: int | None = None
    done: int | None = None
    async for raw in response.content:
        now = clock()
        line = raw.strip()
        if done is not None or not line.startswith(b"data:"):
            continue  # after [DONE], read on to the end of the body so the connection can be reused
        data = line[5:].strip()
        if data == b"[DONE]":
            done = now
            continue
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            record.error = f"malformed SSE data: {data[:80]!r}"
            continue
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk or chunk.get("object") == "error":
            record.error = f"stream error: {_error_message(chunk)}"
            continue
        if _chunk_text(chunk):
            record.chunks += 1
            if last is None:
                record.ttft_ns = now - start
            else:
                record.itl_ns.append(now - last)
            last = now
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            _apply_usage(record, usage)
    if done is not None:
        return done
    if record.error is None:
        record.error = "stream ended without [DONE]"
    return clock()


async def send(
    session: aiohttp.ClientSession,
    base_url: str,
    request: BenchRequest,
    model: str,
    *,
    clock: NsClock,
    level: str,
    warmup: bool,
    origin_ns: int,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
) -> RequestRecord:
    """Send one streaming request and measure it. Never raises for HTTP or transport failures: they are recorded."""
    record = RequestRecord(index=request.index, level=level, warmup=warmup, group=request.group)
    body = orjson.dumps(request.body(model))
    all_headers = {"Content-Type": "application/json", **(headers or {}), **dict(request.headers)}
    start = clock()
    record.start_ns = start - origin_ns
    try:
        async with session.post(base_url.rstrip("/") + request.path, data=body, headers=all_headers,
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            record.status = response.status
            record.routed_to = response.headers.get(ROUTED_TO)
            if response.status != 200:
                raw = await response.read()
                try:
                    message = _error_message(orjson.loads(raw))
                except orjson.JSONDecodeError:
                    message = raw[:_ERROR_CHARS].decode(errors="replace")
                record.error = f"HTTP {response.status}: {message}"
                return record
            end = await _read_stream(response, record, clock, start)
    except TimeoutError:
        record.error = f"timeout after {timeout_s:g} s"
        return record
    except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]
        return record
    record.e2e_ns = end - start
    if record.output_tokens is None:
        record.output_tokens = record.chunks
    if record.error is None and record.ttft_ns is None:
        record.error = "no token in the response"
    return record
