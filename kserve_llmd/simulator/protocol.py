"""Parsing and validating OpenAI / vLLM request bodies into ``ParsedRequest`` (no I/O, no engine state).

Accepted (as vLLM does): ``model``, ``prompt`` (string, one-element list, token ids) or ``messages``, ``max_tokens``
/ ``max_completion_tokens``, ``min_tokens``, ``stop``, ``stop_token_ids``, ``ignore_eos``, ``stream``,
``stream_options.include_usage`` / ``continuous_usage_stats``, ``cache_salt``, ``kv_transfer_params``, ``priority``,
``request_id``; sampling knobs (``temperature``, ``top_p``, ``seed``, ...) are accepted and ignored. Errors are
``InvalidRequestError`` / ``ContextLengthError`` / ``ModelNotFoundError`` with vLLM's messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from kserve_llmd.errors import ContextLengthError, InvalidRequestError, ModelNotFoundError
from kserve_llmd.simulator.request import Sampling
from kserve_llmd.tokenizer import Tokenizer

Kind = Literal["completion", "chat"]


@dataclass(slots=True)
class ParsedRequest:
    kind: Kind
    model: str
    prompt_token_ids: list[int]
    sampling: Sampling
    stream: bool
    include_usage: bool
    continuous_usage: bool
    cache_salt: str | None
    kv_transfer_params: dict[str, Any] | None
    request_id: str | None


def _opt(body: dict[str, Any], key: str, types: type | tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise InvalidRequestError(f"{key} must be {what}, got {value!r}", param=key)
    if not isinstance(value, types):
        raise InvalidRequestError(f"{key} must be {what}, got {type(value).__name__}", param=key)
    return value


def check_model(body: dict[str, Any], served: str) -> str:
    model = _opt(body, "model", str, "a string")
    if model is None:
        return served
    if model != served:
        raise ModelNotFoundError(f"The model `{model}` does not exist.", param="model")
    return str(model)


def _prompt_ids(body: dict[str, Any], tokenizer: Tokenizer) -> list[int]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return tokenizer.encode(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        if any(t < 0 for t in prompt):
            raise InvalidRequestError("prompt token ids must be non-negative", param="prompt")
        return list(prompt)
    if prompt is None:
        raise InvalidRequestError("prompt is required", param="prompt")
    if isinstance(prompt, list) and len(prompt) > 1 and all(isinstance(p, str) for p in prompt):
        raise InvalidRequestError("the simulator serves one prompt per request (batched prompts unsupported)",
                                  param="prompt")
    raise InvalidRequestError("prompt must be a string, a list of token ids, or a one-element list of either",
                              param="prompt")


def _chat_ids(body: dict[str, Any], tokenizer: Tokenizer) -> list[int]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list", param="messages")
    return tokenizer.encode_chat(messages)


def _int(body: dict[str, Any], key: str) -> int | None:
    value = _opt(body, key, int, "an integer")
    return None if value is None else int(value)


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return tuple(s for s in stop if s)
    raise InvalidRequestError("stop must be a string or a list of strings", param="stop")


def parse_request(body: dict[str, Any], kind: Kind, *, served_model: str, tokenizer: Tokenizer,
                  max_model_len: int, default_max_tokens: int | None) -> ParsedRequest:
    model = check_model(body, served_model)
    ids = _chat_ids(body, tokenizer) if kind == "chat" else _prompt_ids(body, tokenizer)
    n = _int(body, "n")
    if n is not None and n != 1:
        raise InvalidRequestError("the simulator supports n=1 only", param="n")
    max_tokens = _int(body, "max_completion_tokens") if kind == "chat" else None
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens")
    if max_tokens is not None and max_tokens < 1:
        raise InvalidRequestError(f"max_tokens must be at least 1, got {max_tokens}.", param="max_tokens")
    n_in = len(ids)
    if n_in >= max_model_len:
        raise ContextLengthError(
            f"This model's maximum context length is {max_model_len} tokens. However, your request has {n_in} "
            "input tokens. Please reduce the length of the input messages.", param="input_tokens")
    if max_tokens is None:
        max_tokens = max_model_len - n_in
        if default_max_tokens is not None:
            max_tokens = min(max_tokens, default_max_tokens)
    elif n_in + max_tokens > max_model_len:
        raise ContextLengthError(
            f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's maximum context "
            f"length is {max_model_len} tokens and your request has {n_in} input tokens "
            f"({max_tokens} > {max_model_len} - {n_in}).", param="max_tokens")
    min_tokens = _int(body, "min_tokens") or 0
    if min_tokens < 0 or min_tokens > max_tokens:
        raise InvalidRequestError(f"min_tokens must be between 0 and max_tokens={max_tokens}, got {min_tokens}",
                                  param="min_tokens")
    stop_ids = _opt(body, "stop_token_ids", list, "a list of token ids") or []
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in stop_ids):
        raise InvalidRequestError("stop_token_ids must hold integers", param="stop_token_ids")
    ignore_eos = bool(_opt(body, "ignore_eos", bool, "a boolean"))
    stream = bool(_opt(body, "stream", bool, "a boolean"))
    options = _opt(body, "stream_options", dict, "an object") or {}
    if options and not stream:
        raise InvalidRequestError("Stream options can only be defined when `stream=True`.", param="stream_options")
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        _opt(body, key, (int, float), "a number")
    _int(body, "priority")
    _int(body, "seed")
    cache_salt = _opt(body, "cache_salt", str, "a string")
    if cache_salt == "":
        raise InvalidRequestError("Parameter 'cache_salt' must be a non-empty string if provided.",
                                  param="cache_salt")
    return ParsedRequest(
        kind=kind, model=model, prompt_token_ids=ids,
        sampling=Sampling(max_tokens=max_tokens, min_tokens=min_tokens, stop=_stop(body),
                          stop_token_ids=frozenset(stop_ids), ignore_eos=ignore_eos),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        continuous_usage=bool(options.get("continuous_usage_stats")),
        cache_salt=cache_salt,
        kv_transfer_params=_opt(body, "kv_transfer_params", dict, "an object"),
        request_id=_opt(body, "request_id", str, "a string"),
    )
