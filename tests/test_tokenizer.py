from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kserve_llmd.errors import InvalidRequestError
from kserve_llmd.tokenizer import BuiltinTokenizer, load_tokenizer, render_chat, word_for_id

TOK = BuiltinTokenizer()


@given(st.lists(st.integers(min_value=0, max_value=31999), max_size=200))
def test_generated_text_round_trips(ids: list[int]) -> None:
    assert TOK.encode(TOK.decode(ids)) == ids


def test_one_token_per_word_and_stable_ids_for_unknown_words() -> None:
    ids = TOK.encode("Hello   world!\nHello")
    assert len(ids) == 3
    assert ids[0] == ids[2]
    assert BuiltinTokenizer().encode("Hello") == [ids[0]]


def test_word_for_id_is_injective_on_the_vocabulary() -> None:
    words = {word_for_id(i) for i in range(32000)}
    assert len(words) == 32000


def test_chat_rendering() -> None:
    text = render_chat([{"role": "system", "content": "be brief"},
                        {"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    assert text == "<|system|> be brief <|user|> hi <|assistant|>"
    with pytest.raises(InvalidRequestError):
        render_chat([{"content": "no role"}])


def test_load_tokenizer_default_is_builtin() -> None:
    assert load_tokenizer(None).name == "builtin-32000"


def _hf_dir(tmp_path: Path, chat_template: str | None) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(["hello world", "the quick brown fox", "be brief please"] * 10, trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    config: dict[str, object] = {"bos_token": "<s>", "eos_token": {"content": "</s>"}}
    if chat_template is not None:
        config["chat_template"] = chat_template
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp_path


TEMPLATE = ("{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}"
            "{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def test_hf_tokenizer_renders_the_models_own_chat_template(tmp_path: Path) -> None:
    tok = load_tokenizer(str(_hf_dir(tmp_path, TEMPLATE)))
    messages = [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}]
    text = tok.render_chat(messages)
    assert text == "<s><|user|>\nhello world</s>\n<|assistant|>\n"
    # The template carries its own special tokens: encoding must not add a second BOS (as vLLM does).
    assert tok.encode_chat(messages) == tok.encode(text, add_special_tokens=False)


def test_hf_tokenizer_without_a_template_uses_the_package_template(tmp_path: Path) -> None:
    tok = load_tokenizer(str(_hf_dir(tmp_path, None)))
    assert tok.render_chat([{"role": "user", "content": "hello"}]) == "<|user|> hello <|assistant|>"


def test_chat_template_raise_exception_is_a_request_error(tmp_path: Path) -> None:
    tok = load_tokenizer(str(_hf_dir(tmp_path, "{{ raise_exception('roles must alternate') }}")))
    with pytest.raises(InvalidRequestError, match="roles must alternate"):
        tok.render_chat([{"role": "user", "content": "x"}])
