"""Precise (event-fed) and approximate (learned) prefix matchers through the PrefixMatcher Protocol."""

from __future__ import annotations

from typing import Any

import pytest

from kserve_llmd.router.approx import ApproximateMatcher
from kserve_llmd.router.interfaces import Endpoint, PrefixMatcher, RequestContext
from kserve_llmd.router.kv_apply import EndpointApplier, IngestStats
from kserve_llmd.router.kvindex import LRUKVIndex
from kserve_llmd.router.matcher import PreciseMatcher
from kserve_llmd.tokenizer import BuiltinTokenizer
from kserve_llmd.wire.kv_events import BlockStored

A, B, C = (Endpoint(id=n, url=f"http://{n}", models=frozenset({"m"})) for n in ("a", "b", "c"))
TOKENS = list(range(1000, 1040))  # 10 blocks of 4


def ctx(tokens: list[int] | None = None, **kw: Any) -> RequestContext:
    return RequestContext(request_id="r", model="m", path="/v1/completions", body=kw.pop("body", {}),
                          token_ids=tokens, **kw)


def feed(index: LRUKVIndex, endpoint: str, tokens: list[int], lora: str | None = None,
         salt: str | None = None, block_size: int = 4) -> None:
    n = len(tokens) // block_size
    extra: list[Any] | None = [(salt,)] if salt else None
    event = BlockStored(list(range(n)), None, tokens[: n * block_size], block_size, lora_name=lora, extra_keys=extra)
    EndpointApplier(endpoint, "m", index, IngestStats()).apply([event])


def test_precise_matcher_reports_longest_prefix_per_endpoint_from_engine_events() -> None:
    index = LRUKVIndex(1000)
    feed(index, "a", TOKENS[:24])
    feed(index, "b", TOKENS[:8] + [7] * 16)
    matcher: PrefixMatcher = PreciseMatcher(index, block_size=4)
    result = matcher.match(ctx([*TOKENS, 1, 2]), [A, B, C])  # 2 trailing tokens: not a full block
    assert (result.total_blocks, result.block_size) == (10, 4)
    assert result.matched_blocks == {"a": 6, "b": 2, "c": 0}
    assert result.ratio("a") == pytest.approx(0.6)


def test_lora_and_salt_must_agree_between_request_and_engine() -> None:
    index = LRUKVIndex(1000)
    feed(index, "a", TOKENS, lora="ad", salt="s")
    matcher = PreciseMatcher(index, block_size=4)
    assert matcher.match(ctx(TOKENS), [A]).matched_blocks == {"a": 0}
    assert matcher.match(ctx(TOKENS, lora="ad"), [A]).matched_blocks == {"a": 0}
    assert matcher.match(ctx(TOKENS, lora="ad", cache_salt="s"), [A]).matched_blocks == {"a": 10}


def test_block_size_comes_from_the_provider_with_a_default_and_keys_are_computed_once() -> None:
    index = LRUKVIndex(1000)
    feed(index, "a", TOKENS, block_size=8)
    sizes: dict[str, int] = {}
    matcher = PreciseMatcher(index, block_size=sizes.get, default_block_size=4)
    assert matcher.match(ctx(TOKENS), [A]).block_size == 4
    sizes["m"] = 8
    request = ctx(TOKENS)
    first = matcher.match(request, [A])
    assert (first.total_blocks, first.matched_blocks) == (5, {"a": 5})
    request.token_ids = [0] * 40  # cached keys are reused for the same request
    assert matcher.match(request, [A]).matched_blocks == {"a": 5}


def test_text_only_context_is_tokenized_and_no_prompt_gives_an_empty_match() -> None:
    tok = BuiltinTokenizer()
    text = " ".join(f"w{i}" for i in range(16))
    index = LRUKVIndex(1000)
    feed(index, "a", tok.encode(text))
    matcher = PreciseMatcher(index, block_size=4, tokenizer_for_model=lambda _m: tok)
    request = ctx(None, prompt_text=text)
    assert matcher.match(request, [A]).matched_blocks == {"a": 4}
    assert request.token_ids == tok.encode(text)
    empty = PreciseMatcher(index, block_size=4).match(ctx(None, prompt_text=text), [A])
    assert (empty.total_blocks, empty.matched_blocks, empty.ratio("a")) == (0, {}, 0.0)


def test_approximate_matcher_learns_from_routing_decisions() -> None:
    matcher: PrefixMatcher = ApproximateMatcher(chunk_chars=8, capacity=1000)
    system = "You are a helpful assistant. " * 4  # 116 chars: 14 chunks of 8
    first = ctx(None, prompt_text=system + "Question one?")
    assert matcher.match(first, [A, B]).matched_blocks == {"a": 0, "b": 0}
    matcher.observe_routed(first, A)
    second = ctx(None, prompt_text=system + "Another question entirely")
    result = matcher.match(second, [A, B])
    assert result.block_size == 8
    assert result.matched_blocks["b"] == 0
    assert 14 <= result.matched_blocks["a"] < result.total_blocks


def test_approximate_matcher_reads_the_body_and_forgets_removed_endpoints() -> None:
    matcher = ApproximateMatcher(chunk_chars=4, capacity=1000)
    body = {"messages": [{"role": "user", "content": "hello there, general kenobi"}]}
    request = ctx(None, body=body)
    matcher.observe_routed(request, B)
    assert matcher.match(ctx(None, body=body), [B]).ratio("b") == 1.0
    matcher.remove_endpoint("b")
    assert matcher.match(ctx(None, body=body), [B]).matched_blocks == {"b": 0}


def test_approximate_matcher_falls_back_to_token_chunks_and_is_bounded() -> None:
    matcher = ApproximateMatcher(chunk_tokens=4, capacity=5)
    request = ctx(TOKENS)
    matcher.observe_routed(request, A)
    assert len(matcher.index) == 5  # 10 chunks offered, LRU keeps 5
    assert matcher.match(ctx(TOKENS), [A]).total_blocks == 10


def test_max_blocks_keys_and_matches_only_the_head_of_the_prompt() -> None:
    index = LRUKVIndex(1000)
    feed(index, "a", TOKENS[:12])  # 3 blocks cached on a
    feed(index, "b", TOKENS)  # the whole prompt cached on b
    capped = PreciseMatcher(index, block_size=4, max_blocks=3)
    head = capped.match(ctx(TOKENS), [A, B])
    # 10 full blocks, only the first 3 count: a holds the whole head, as b does
    assert (head.total_blocks, head.matched_blocks) == (3, {"a": 3, "b": 3})
    whole = PreciseMatcher(index, block_size=4).match(ctx(TOKENS), [A, B])
    assert (whole.total_blocks, whole.matched_blocks) == (10, {"a": 3, "b": 10})
    with pytest.raises(ValueError, match="max_blocks"):
        PreciseMatcher(index, max_blocks=0)


def test_approximate_max_blocks_caps_text_and_token_chunks() -> None:
    text = "abcdefgh" * 10  # 10 chunks of 8
    matcher = ApproximateMatcher(chunk_chars=8, chunk_tokens=4, capacity=1000, max_blocks=4)
    request = ctx(None, prompt_text=text)
    matcher.observe_routed(request, A)
    assert len(matcher.index) == 4  # only the head was learned
    other = ctx(None, prompt_text=text[:32] + "different tail, same head" * 3)
    assert matcher.match(other, [A]).ratio("a") == 1.0  # the head is all that is compared
    tokens = ctx(TOKENS)
    assert matcher.match(tokens, [A]).total_blocks == 4
