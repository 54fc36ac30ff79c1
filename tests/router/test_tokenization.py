"""Router-side tokenization: prompt extraction, local tokenizers, and the engine's /tokenize over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from kserve_llmd.errors import ConfigError, InvalidRequestError
from kserve_llmd.router.tokenization import (
    EngineTokenization,
    LocalTokenization,
    build_tokenization,
    prompt_of,
)
from kserve_llmd.tokenizer import BuiltinTokenizer, render_chat

TOK = BuiltinTokenizer()


def test_prompt_shapes() -> None:
    assert prompt_of({"prompt": "a b"}).text == "a b"
    assert prompt_of({"prompt": [1, 2, 3]}).token_ids == [1, 2, 3]
    assert prompt_of({"prompt": ["first", "second"]}).text == "first"
    assert prompt_of({"prompt": [[4, 5], [6]]}).token_ids == [4, 5]
    messages = [{"role": "user", "content": "hi"}]
    assert prompt_of({"messages": messages}).messages == messages
    bad_bodies: list[dict[str, object]] = [{}, {"prompt": 3}, {"prompt": []}, {"prompt": [True]}, {"messages": "x"}]
    for bad in bad_bodies:
        with pytest.raises(InvalidRequestError):
            prompt_of(bad)


async def test_local_tokenization_of_text_chat_and_ids() -> None:
    local = LocalTokenization(TOK)
    assert (await local.tokenize({"prompt": "x y z"}, "m")).token_ids == TOK.encode("x y z")
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    chat = local.tokenize_sync({"messages": messages})
    assert (chat.text, chat.token_ids, chat.source) == (render_chat(messages), TOK.encode(render_chat(messages)),
                                                         "local")
    ids = [9, 8, 7]
    assert local.tokenize_sync({"prompt": ids}).token_ids is ids  # no copy


def test_build_tokenization_specs(tmp_path: Path) -> None:
    assert isinstance(build_tokenization("builtin"), LocalTokenization)
    with pytest.raises(ConfigError, match="engine"):
        build_tokenization("engine")
    with pytest.raises(ConfigError, match="cannot load"):
        build_tokenization(str(tmp_path / "missing.json"))


def test_hf_tokenizer_json_is_supported(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE(unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    hf.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 10,
                           trainers.BpeTrainer(vocab_size=60, special_tokens=["[UNK]"]))
    hf.save(str(tmp_path / "tokenizer.json"))
    local = build_tokenization(str(tmp_path))
    assert isinstance(local, LocalTokenization)
    assert local.tokenize_sync({"prompt": "the lazy fox"}).token_ids == hf.encode("the lazy fox").ids


@pytest.fixture
async def engine() -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    """A real HTTP server speaking vLLM's /tokenize; ``/broken`` answers 500."""
    seen: list[dict[str, object]] = []

    async def tokenize(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        seen.append(body)
        text = body["prompt"] if "prompt" in body else render_chat(body["messages"])
        tokens = TOK.encode(text)
        return web.json_response({"count": len(tokens), "max_model_len": 4096, "tokens": tokens})

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "no"}}, status=500)

    app = web.Application()
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/broken/tokenize", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_engine_tokenization_asks_once_then_serves_from_cache(
    engine: tuple[str, list[dict[str, object]]],
) -> None:
    url, seen = engine
    remote = EngineTokenization(url, cache_size=2)
    try:
        messages = [{"role": "user", "content": "hello there"}]
        first = await remote.tokenize({"messages": messages}, "m")
        again = await remote.tokenize({"messages": messages}, "m")
        assert first.token_ids == again.token_ids == TOK.encode(render_chat(messages))
        assert (first.source, again.source) == ("engine", "cache")
        assert seen == [{"model": "m", "messages": messages, "add_generation_prompt": True}]
        for text in ("a", "b", "c"):  # cache of 2: the chat entry is evicted
            await remote.tokenize({"prompt": text}, "m")
        assert (await remote.tokenize({"messages": messages}, "m")).source == "engine"
        assert (remote.requests, remote.cache_hits, remote.failures) == (5, 1, 0)
    finally:
        await remote.aclose()


async def test_engine_tokenization_failures_fall_back_to_approximate_mode(
    engine: tuple[str, list[dict[str, object]]],
) -> None:
    url, _ = engine
    remote = EngineTokenization(lambda model: url + "/broken" if model == "m" else None)
    try:
        failed = await remote.tokenize({"prompt": "some text"}, "m")
        assert (failed.token_ids, failed.text, failed.source) == (None, "some text", "fallback")
        nowhere = await remote.tokenize({"prompt": "x"}, "unknown-model")
        assert nowhere.token_ids is None
        assert remote.failures == 2
    finally:
        await remote.aclose()


async def test_engine_tokenization_unreachable_engine_falls_back() -> None:
    with socket.socket() as probe:  # an ephemeral port that nobody listens on any more
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    remote = EngineTokenization(f"http://127.0.0.1:{port}", timeout=1.0)
    try:
        assert (await remote.tokenize({"prompt": "x"}, "m")).source == "fallback"
        assert remote.failures == 1
    finally:
        await remote.aclose()
