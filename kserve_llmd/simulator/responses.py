"""Response bodies and SSE chunks shaped like vLLM's OpenAI server (vllm/entrypoints/openai/protocol.py).

Completions: ``{"id": "cmpl-…", "object": "text_completion", "created", "model", "choices": [{"index", "text",
"logprobs": null, "finish_reason", "stop_reason", "prompt_logprobs": null}], "usage", "kv_transfer_params"}``.
Chat: ``"object": "chat.completion"``, ``choices[].message = {"role": "assistant", "content", "tool_calls": []}``.
Usage always carries ``prompt_tokens_details.cached_tokens`` (vLLM: with ``--enable-prompt-tokens-details``).
Streaming chunks use ``text_completion`` / ``chat.completion.chunk``; the usage chunk has ``choices: []``.
"""

from __future__ import annotations

from typing import Any

import orjson

from kserve_llmd.simulator.protocol import Kind


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": {"cached_tokens": max(cached_tokens, 0)},
    }


def response_id(kind: Kind, request_id: str) -> str:
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{request_id}"


def full_response(kind: Kind, rid: str, created: int, model: str, text: str, finish_reason: str | None,
                  stop_reason: str | int | None, use: dict[str, Any],
                  kv_transfer_params: dict[str, Any] | None) -> dict[str, Any]:
    if kind == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None, "tool_calls": [],
                        "reasoning_content": None},
            "logprobs": None, "finish_reason": finish_reason, "stop_reason": stop_reason,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason,
                  "stop_reason": stop_reason, "prompt_logprobs": None}
        obj = "text_completion"
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": [choice], "usage": use,
            "system_fingerprint": None, "prompt_logprobs": None, "kv_transfer_params": kv_transfer_params}


def chunk(kind: Kind, rid: str, created: int, model: str, text: str | None, finish_reason: str | None = None,
          stop_reason: str | int | None = None, use: dict[str, Any] | None = None, role: bool = False) -> bytes:
    """One SSE event ``data: {json}\\n\\n``; ``text=None`` with ``use`` makes the final usage chunk."""
    if text is None and use is not None:
        choices: list[dict[str, Any]] = []
    elif kind == "chat":
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {"content": text}
        choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason,
                    "stop_reason": stop_reason}]
    else:
        choices = [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason,
                    "stop_reason": stop_reason}]
    body: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
                            "created": created, "model": model, "choices": choices}
    if use is not None:
        body["usage"] = use
    return b"data: " + orjson.dumps(body) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def error_event(error: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(error) + b"\n\n"
