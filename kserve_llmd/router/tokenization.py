"""Router-side tokenization of a request body (what the precise prefix matcher hashes).

Prompt extraction (``prompt_of``), OpenAI shapes:

- completions ``prompt``: a string; a list of token ids (used as is, no tokenizer); a list of strings or of
  token-id lists (a batch: the FIRST prompt is what routing looks at);
- chat ``messages``: rendered to text by the tokenizer's ``render_chat`` (the package's fixed template), or sent
  as messages to the engine's ``/tokenize`` so the engine applies its own chat template.

Three pluggable sources, one async interface ``RequestTokenizer.tokenize(body, model) -> Tokenized``:

- ``LocalTokenization(tokenizer)``: the built-in tokenizer (same as the simulator's) or a local HF
  ``tokenizer.json`` (the engine's own). Synchronous underneath (``tokenize_sync``), no copies beyond the
  tokenizer's own output list.
- ``EngineTokenization(url_for, timeout, cache_size)``: ``POST {url}/tokenize`` (vLLM: ``{model, prompt |
  messages}`` → ``{count, max_model_len, tokens}``), LRU-cached by blake2b(model, prompt); on any failure
  (timeout, non-200, bad body) the result has ``token_ids=None`` (approximate mode) and ``failures`` counts it.

``build_tokenization(spec, url_for=...)``: ``"builtin"``, a path to a ``tokenizer.json`` (or its folder), or
``"engine"``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import aiohttp
import orjson

from kserve_llmd.errors import ConfigError, InvalidRequestError
from kserve_llmd.tokenizer import Tokenizer, load_tokenizer, render_chat
from kserve_llmd.types import JSON

log = logging.getLogger(__name__)

Source = Literal["request", "local", "engine", "cache", "fallback"]


@dataclass(slots=True)
class Prompt:
    """What a request body asks the model to read: text, token ids, or chat messages (exactly one set)."""

    text: str | None = None
    token_ids: Sequence[int] | None = None
    messages: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class Tokenized:
    token_ids: Sequence[int] | None  # None: approximate mode (tokenization unavailable)
    text: str | None  # the prompt text when there is one (chat: rendered with the package template)
    source: Source


def _is_token_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def prompt_of(body: JSON) -> Prompt:
    """The prompt of a completions or chat body (see the module docstring); raises ``InvalidRequestError``."""
    messages = body.get("messages")
    if messages is not None:
        if not isinstance(messages, list):
            raise InvalidRequestError("messages must be a list", param="messages")
        return Prompt(messages=messages)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return Prompt(text=prompt)
    if isinstance(prompt, list) and prompt:
        if _is_token_list(prompt):
            return Prompt(token_ids=prompt)
        first = prompt[0]
        if isinstance(first, str):
            return Prompt(text=first)
        if _is_token_list(first):
            return Prompt(token_ids=first)
    raise InvalidRequestError("prompt must be a string, a list of token ids, or a list of those", param="prompt")


class RequestTokenizer(Protocol):
    async def tokenize(self, body: JSON, model: str) -> Tokenized: ...

    async def aclose(self) -> None: ...


class LocalTokenization:
    """Tokenizes in-process with a ``kserve_llmd.tokenizer.Tokenizer`` (built-in or HF ``tokenizer.json``)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def tokenize_sync(self, body: JSON) -> Tokenized:
        prompt = prompt_of(body)
        if prompt.token_ids is not None:
            return Tokenized(prompt.token_ids, None, "request")
        tok = self.tokenizer
        if prompt.messages is not None:
            text = tok.render_chat(prompt.messages)
            return Tokenized(tok.encode(text, tok.chat_add_special_tokens), text, "local")
        assert prompt.text is not None
        return Tokenized(tok.encode(prompt.text), prompt.text, "local")

    async def tokenize(self, body: JSON, model: str) -> Tokenized:
        return self.tokenize_sync(body)

    async def aclose(self) -> None:
        return None


class EngineTokenization:
    """Asks an engine's ``/tokenize`` (its exact tokenizer and chat template), with an LRU cache and a timeout."""

    def __init__(
        self,
        url_for: Callable[[str], str | None] | str,
        *,
        timeout: float = 0.5,
        cache_size: int = 4096,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._url_for = (lambda _model: url_for) if isinstance(url_for, str) else url_for
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._cache: OrderedDict[bytes, list[int]] = OrderedDict()
        self._cache_size = cache_size
        self._session = session
        self._owns_session = session is None
        self.requests = 0
        self.cache_hits = 0
        self.failures = 0

    async def aclose(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    async def tokenize(self, body: JSON, model: str) -> Tokenized:
        prompt = prompt_of(body)
        if prompt.token_ids is not None:
            return Tokenized(prompt.token_ids, None, "request")
        text = prompt.text if prompt.messages is None else render_chat(prompt.messages)
        if prompt.messages is None:
            payload: JSON = {"model": model, "prompt": prompt.text, "add_special_tokens": True}
        else:
            payload = {"model": model, "messages": prompt.messages, "add_generation_prompt": True}
        raw = orjson.dumps(payload)
        key = hashlib.blake2b(raw, digest_size=16).digest()
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            return Tokenized(cached, text, "cache")
        tokens = await self._ask(model, raw)
        if tokens is None:
            self.failures += 1
            return Tokenized(None, text, "fallback")
        self._cache[key] = tokens
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return Tokenized(tokens, text, "engine")

    async def _ask(self, model: str, raw: bytes) -> list[int] | None:
        url = self._url_for(model)
        if url is None:
            return None
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self.requests += 1
        try:
            async with self._session.post(
                url.rstrip("/") + "/tokenize", data=raw, headers={"Content-Type": "application/json"},
                timeout=self._timeout,
            ) as resp:
                if resp.status != 200:
                    log.warning("engine /tokenize at %s answered %d; approximate mode for this request", url,
                                resp.status)
                    return None
                data = orjson.loads(await resp.read())
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            log.warning("engine /tokenize at %s failed (%s); approximate mode for this request", url,
                        type(exc).__name__)
            return None
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not _is_token_list(tokens):
            log.warning("engine /tokenize at %s returned no token list; approximate mode for this request", url)
            return None
        assert isinstance(tokens, list)
        return tokens


def build_tokenization(spec: str, *, url_for: Callable[[str], str | None] | None = None,
                       timeout: float = 0.5) -> RequestTokenizer:
    """``"builtin"`` | path to ``tokenizer.json`` (or its folder) | ``"engine"`` (needs ``url_for``)."""
    if spec == "engine":
        if url_for is None:
            raise ConfigError("tokenizer: 'engine' needs a way to find an engine URL for a model")
        return EngineTokenization(url_for, timeout=timeout)
    try:
        return LocalTokenization(load_tokenizer(spec))
    except Exception as exc:  # tokenizers raises its own exception type for unreadable files
        raise ConfigError(f"tokenizer: cannot load {spec!r}: {exc}") from exc
