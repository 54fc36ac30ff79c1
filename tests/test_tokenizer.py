from __future__ import annotations

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
