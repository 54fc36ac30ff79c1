"""Approximate prefix matching without KV events (sglang-router ``cache_aware`` style), learning from routing.

The router assumes an engine caches what it was sent. Each request's prompt is cut into pseudo-blocks and keyed as
a CHAIN (a key depends on the whole prefix up to its block), which is a radix tree over pseudo-blocks flattened
into a hash map; the same bounded ``LRUKVIndex`` as the precise path holds key → endpoints::

    text path  (ctx.prompt_text, or the body's prompt / rendered chat):  C = chunk_chars (default 64)
        key[i] = hash((key[i-1], text[i*C:(i+1)*C])) & (2**60 - 1),  key[-1] = seed_for(model, lora, cache_salt)
    token path (only ctx.token_ids known):  B = chunk_tokens (default 16),  key = hashing.block_keys
    observe_routed(ctx, e): index.add(e, keys)          match: index.match(keys, endpoints)
    max_blocks (llm-d's maxPrefixBlocksToMatch): only the first max_blocks pseudo-blocks are keyed (None: all)
    PrefixMatch(total_blocks=len(keys), matched_blocks, block_size=C or B)   # block_size in chars on the text path

String hashing is randomised per process (PYTHONHASHSEED): harmless here, the keys never leave the process.
``capacity`` (pseudo-blocks kept, LRU) should approximate what the engines really cache, e.g.
sum(engine cache blocks) × engine block size × ~4 chars per token / C. The learned state is a guess: an engine
that evicted a prefix still looks like it holds it until LRU drops it (the precise matcher has no such error).
"""

from __future__ import annotations

from collections.abc import Sequence

from kserve_llmd.errors import InvalidRequestError
from kserve_llmd.router.hashing import KEY_MASK, block_keys, seed_for
from kserve_llmd.router.interfaces import Endpoint, KVIndex, PrefixMatch, RequestContext
from kserve_llmd.router.kvindex import LRUKVIndex
from kserve_llmd.router.tokenization import prompt_of
from kserve_llmd.tokenizer import render_chat
from kserve_llmd.types import BlockKey, EndpointId

CYCLE_KEY = "approx_keys"


def text_keys(text: str, chunk_chars: int, seed_key: BlockKey) -> list[BlockKey]:
    """Chained keys of the full ``chunk_chars`` chunks of ``text`` (per-process: str hashing is randomised)."""
    out = []
    prev = seed_key
    for start in range(0, len(text) - chunk_chars + 1, chunk_chars):
        prev = hash((prev, text[start:start + chunk_chars])) & KEY_MASK
        out.append(prev)
    return out


class ApproximateMatcher:
    """Router-side learned prefix tree (no engine events). Parameters in the module docstring."""

    def __init__(
        self, *, chunk_chars: int = 64, chunk_tokens: int = 16, capacity: int = 500_000,
        index: KVIndex | None = None, max_blocks: int | None = None,
    ) -> None:
        if chunk_chars <= 0 or chunk_tokens <= 0:
            raise ValueError("chunk sizes must be positive")
        if max_blocks is not None and max_blocks <= 0:
            raise ValueError("max_blocks must be positive")
        self.max_blocks = max_blocks
        self.chunk_chars = chunk_chars
        self.chunk_tokens = chunk_tokens
        self.index: KVIndex = index if index is not None else LRUKVIndex(capacity)

    def _text(self, ctx: RequestContext) -> str | None:
        if ctx.prompt_text is not None:
            return ctx.prompt_text
        try:
            prompt = prompt_of(ctx.body)
        except InvalidRequestError:
            return None
        return render_chat(prompt.messages) if prompt.messages is not None else prompt.text

    def keys_for(self, ctx: RequestContext) -> tuple[list[BlockKey], int]:
        """(keys, pseudo block size), cached on ``ctx.cycle_state``."""
        cached: tuple[list[BlockKey], int] | None = ctx.cycle_state.get(CYCLE_KEY)
        if cached is not None:
            return cached
        seed = seed_for(ctx.model, ctx.lora, ctx.cache_salt)
        text = self._text(ctx)
        cap = self.max_blocks
        if text is not None:
            if cap is not None and len(text) > cap * self.chunk_chars:
                text = text[: cap * self.chunk_chars]
            result = (text_keys(text, self.chunk_chars, seed), self.chunk_chars)
        elif ctx.token_ids:
            tokens = ctx.token_ids
            if cap is not None and len(tokens) > cap * self.chunk_tokens:
                tokens = tokens[: cap * self.chunk_tokens]
            result = (block_keys(tokens, self.chunk_tokens, seed), self.chunk_tokens)
        else:
            result = ([], self.chunk_chars)
        ctx.cycle_state[CYCLE_KEY] = result
        return result

    def match(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> PrefixMatch:
        keys, size = self.keys_for(ctx)
        if not keys:
            return PrefixMatch(total_blocks=0, matched_blocks={}, block_size=size)
        return PrefixMatch(len(keys), self.index.match(keys, [e.id for e in endpoints]), size)

    def observe_routed(self, ctx: RequestContext, endpoint: Endpoint) -> None:
        keys, _ = self.keys_for(ctx)
        if keys:
            self.index.add(endpoint.id, keys)

    def remove_endpoint(self, endpoint: EndpointId) -> None:
        """Forget what was learned about an endpoint (it left, or restarted)."""
        self.index.clear(endpoint)
