"""Tokenizers shared by the simulator and the router, so both sides count and hash the same token ids.

- ``BuiltinTokenizer``: deterministic, dependency-free, fast. One token per whitespace-separated word. Ids map to
  synthetic pronounceable words (``word_for_id``) so generated text round-trips exactly; any other word gets a
  stable CRC32-derived id (decoding it gives the synthetic word of that id: lossy, and documented as such).
- ``HFTokenizer``: a local HuggingFace ``tokenizer.json`` (the engine's own), through the ``tokenizers`` package.

Chat messages are rendered to one prompt string by ``render_chat``: the package's fixed template for the built-in
tokenizer, and the model's own ``chat_template`` (from ``tokenizer_config.json`` beside ``tokenizer.json``) for an HF
tokenizer that has one, rendered with jinja2 as vLLM/transformers do. ``encode_chat`` is the one way to turn messages
into token ids: a model template carries its own special tokens, so its text is encoded without adding them again
(what vLLM does; checked on the real engine, docs/real-vllm-findings.md).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from kserve_llmd.errors import InvalidRequestError

_CONSONANTS = "bcdfghjklmnprstvwxyz"
_VOWELS = "aeiou"
_SYLLABLES = [c + v for c in _CONSONANTS for v in _VOWELS]  # 100 two-letter syllables
_WORD_RE = re.compile(r"\S+")


class Tokenizer(Protocol):
    """What the simulator and the router need from a tokenizer."""

    @property
    def name(self) -> str: ...

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def render_chat(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> str: ...

    def encode_chat(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]: ...

    @property
    def chat_add_special_tokens(self) -> bool:
        """Whether rendered chat text is encoded with special tokens added (False when the template has its own)."""
        ...


def word_for_id(token_id: int) -> str:
    """The synthetic word of a token id: base-100 digits spelled as consonant-vowel syllables."""
    digits = [_SYLLABLES[token_id % 100]]
    token_id //= 100
    while token_id:
        digits.append(_SYLLABLES[token_id % 100])
        token_id //= 100
    return "".join(reversed(digits))


def message_text(content: Any) -> str:
    """The text of an OpenAI message ``content``: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("text", ""), str):
                raise InvalidRequestError("message content parts must be objects with a text field",
                                          param="messages")
            parts.append(part.get("text", ""))
        return " ".join(parts)
    raise InvalidRequestError("message content must be a string or a list of parts", param="messages")


def render_chat(messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> str:
    """The package's fixed chat template: ``<|role|> content`` per message, then ``<|assistant|>``."""
    pieces = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequestError("each message must be an object with a string role", param="messages")
        pieces.append(f"<|{message['role']}|> {message_text(message.get('content'))}")
    if add_generation_prompt:
        pieces.append("<|assistant|>")
    return " ".join(pieces)


class BuiltinTokenizer:
    """Deterministic word-level tokenizer: the embedded default of the simulator and the router."""

    def __init__(self, vocab_size: int = 32000) -> None:
        if vocab_size < 100:
            raise ValueError("vocab_size must be at least 100")
        self.vocab_size = vocab_size
        self._words = [word_for_id(i) for i in range(vocab_size)]
        self._ids = {w: i for i, w in enumerate(self._words)}

    @property
    def name(self) -> str:
        return f"builtin-{self.vocab_size}"

    def token_id(self, word: str) -> int:
        known = self._ids.get(word)
        if known is not None:
            return known
        return zlib.crc32(word.encode()) % self.vocab_size

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = self._ids
        out = []
        for word in _WORD_RE.findall(text):
            known = ids.get(word)
            out.append(known if known is not None else zlib.crc32(word.encode()) % self.vocab_size)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        words = self._words
        size = self.vocab_size
        return " ".join(words[i % size] for i in ids)

    def word(self, token_id: int) -> str:
        return self._words[token_id % self.vocab_size]

    def render_chat(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        return render_chat(messages, add_generation_prompt)

    def encode_chat(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]:
        return self.encode(render_chat(messages, add_generation_prompt))

    @property
    def chat_add_special_tokens(self) -> bool:
        return True


class HFTokenizer:
    """A local HuggingFace ``tokenizer.json`` (for example the real engine's own), with the model's chat template."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer as _HF  # imported here: only this mode needs it

        self._path = Path(path)
        self._tok = _HF.from_file(str(self._path))
        self._config = _tokenizer_config(self._path.parent / "tokenizer_config.json")
        self._template = _compile_chat_template(self._config.get("chat_template"))

    @property
    def name(self) -> str:
        return f"hf:{self._path}"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=True))

    def render_chat(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        if self._template is None:
            return render_chat(messages, add_generation_prompt)
        for message in messages:
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise InvalidRequestError("each message must be an object with a string role", param="messages")
        plain = [{**m, "content": message_text(m.get("content"))} for m in messages]
        special = {k: _token_text(self._config.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        return str(self._template.render(messages=plain, add_generation_prompt=add_generation_prompt, **special))

    def encode_chat(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]:
        return self.encode(self.render_chat(messages, add_generation_prompt), self.chat_add_special_tokens)

    @property
    def chat_add_special_tokens(self) -> bool:
        return self._template is None


def _tokenizer_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import json

    config = json.loads(path.read_text())
    return config if isinstance(config, dict) else {}


def _token_text(value: Any) -> str:
    """A special token as ``tokenizer_config.json`` gives it: a string, or ``{"content": ...}``."""
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return value if isinstance(value, str) else ""


def _compile_chat_template(template: Any) -> Any:
    """The model's chat template compiled in jinja2's sandbox (as transformers does), or None when there is none."""
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if not isinstance(template, str) or not template:
        return None
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise InvalidRequestError(f"chat template: {message}", param="messages")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def load_tokenizer(spec: str | None) -> Tokenizer:
    """``None`` or ``"builtin"``: the built-in tokenizer; otherwise a path to a ``tokenizer.json`` (or its folder)."""
    if spec is None or spec == "builtin":
        return BuiltinTokenizer()
    path = Path(spec)
    if path.is_dir():
        path = path / "tokenizer.json"
    return HFTokenizer(path)
