"""Per-request prefix matching, precise (event-fed index) and approximate (see ``approx.py``).

``PreciseMatcher.match(ctx, endpoints)``::

    B        = block size of ctx.model                         (one block size per model, see below)
    keys     = block_keys(ctx.token_ids, B, seed_for(ctx.model, ctx.lora, ctx.cache_salt))   # full blocks only
    matched  = index.match(keys, [e.id for e in endpoints])    # longest CONSECUTIVE prefix per endpoint
    result   = PrefixMatch(total_blocks=len(keys), matched_blocks=matched, block_size=B)

Keys are computed once per request and kept in ``ctx.cycle_state["prefix_keys"]`` (the scheduler may run several
profiles). ``ctx.model`` must be the BASE model name the endpoints' KV events are keyed by (``add_endpoint(model=)``)
and ``ctx.lora`` the adapter name (vLLM's ``lora_name``); ``ctx.cache_salt`` the request's ``cache_salt``.

Block size: ONE block size per model is assumed (every engine of a model runs the same ``--block-size``; mixed
sizes would need one key set per size). ``block_size`` is an int or a ``model -> int | None`` callable, e.g.
``lambda m: ingester.block_sizes.get(m)`` (learned from BlockStored events) or a value read from the engines'
``vllm:cache_config_info{block_size}``; ``None`` falls back to ``default_block_size``.

Without ``ctx.token_ids`` the matcher tokenizes ``ctx.prompt_text`` with ``tokenizer_for_model(ctx.model)`` when
given (and stores the ids on ``ctx``); otherwise the match is empty (total 0) and prefix scores are 0.

With ``max_blocks`` (llm-d's ``maxPrefixBlocksToMatch``), only the prompt's first ``max_blocks`` blocks are keyed
and matched: ``total_blocks`` is at most ``max_blocks``, so the score of a longer prompt is the share of that head
it finds cached. It also bounds the per-request hashing. None: every full block.

With ``speculative`` (``speculative.py``, llm-d's ``speculativeIndexing``), ``observe_routed`` records the routed
request's keys for its endpoint for a few seconds and ``match`` counts them as cached there, closing the blind spot
before the engine's own events arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kserve_llmd.router.hashing import block_keys, seed_for
from kserve_llmd.router.interfaces import Endpoint, KVIndex, PrefixMatch, RequestContext
from kserve_llmd.router.speculative import SpeculativeEntries
from kserve_llmd.tokenizer import Tokenizer
from kserve_llmd.types import BlockKey

CYCLE_KEY = "prefix_keys"


class PreciseMatcher:
    """Matches a request's own block keys against the event-fed ``KVIndex``."""

    def __init__(
        self,
        index: KVIndex,
        *,
        block_size: int | Callable[[str], int | None] = 16,
        default_block_size: int = 16,
        tokenizer_for_model: Callable[[str], Tokenizer] | None = None,
        speculative: SpeculativeEntries | None = None,
        max_blocks: int | None = None,
    ) -> None:
        if default_block_size <= 0 or (isinstance(block_size, int) and block_size <= 0):
            raise ValueError("block sizes must be positive")
        if max_blocks is not None and max_blocks <= 0:
            raise ValueError("max_blocks must be positive")
        self.max_blocks = max_blocks
        self.index = index
        self._block_size = block_size
        self._default_block_size = default_block_size
        self._tokenizer_for = tokenizer_for_model
        self.speculative = speculative

    def block_size_for(self, model: str) -> int:
        if isinstance(self._block_size, int):
            return self._block_size
        size = self._block_size(model)
        return size if size is not None and size > 0 else self._default_block_size

    def keys_for(self, ctx: RequestContext, block_size: int) -> list[BlockKey]:
        """The request's own block keys (cached on ``ctx.cycle_state``)."""
        cached = ctx.cycle_state.get(CYCLE_KEY)
        if cached is not None and cached[0] == block_size:
            keys: list[BlockKey] = cached[1]
            return keys
        tokens = ctx.token_ids
        if tokens is None and ctx.prompt_text is not None and self._tokenizer_for is not None:
            tokens = ctx.token_ids = self._tokenizer_for(ctx.model).encode(ctx.prompt_text)
        if tokens and self.max_blocks is not None and len(tokens) > self.max_blocks * block_size:
            tokens = tokens[: self.max_blocks * block_size]  # only the blocks that will be matched are keyed
        keys = [] if not tokens else block_keys(tokens, block_size, seed_for(ctx.model, ctx.lora, ctx.cache_salt))
        ctx.cycle_state[CYCLE_KEY] = (block_size, keys)
        return keys

    def match(self, ctx: RequestContext, endpoints: Sequence[Endpoint]) -> PrefixMatch:
        block_size = self.block_size_for(ctx.model)
        keys = self.keys_for(ctx, block_size)
        if not keys:
            return PrefixMatch(total_blocks=0, matched_blocks={}, block_size=block_size)
        matched = self.index.match(keys, [e.id for e in endpoints])
        if self.speculative is not None:
            self.speculative.extend(keys, matched)
        return PrefixMatch(total_blocks=len(keys), matched_blocks=matched, block_size=block_size)

    def observe_routed(self, ctx: RequestContext, endpoint: Endpoint) -> None:
        """With speculation, record the request's keys (computed by ``match``) for the endpoint it was routed to.
        Without, nothing: the index learns from the engines' KV events only."""
        cached = ctx.cycle_state.get(CYCLE_KEY)
        if self.speculative is not None and cached is not None and cached[1]:
            self.speculative.add(endpoint.id, cached[1])
