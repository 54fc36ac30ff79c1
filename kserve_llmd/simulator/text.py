"""Output text of a request: incremental deltas for streaming, stop-string truncation (no engine state).

With the built-in tokenizer each token is one word, so the delta of token ``k`` is ``" " + word`` (no space before
the first); other tokenizers decode the whole output and diff (quadratic, fine for simulator output lengths).
If the request stopped on a stop string, the text ends just before its first occurrence (vLLM's default
``include_stop_str_in_output=False``).
"""

from __future__ import annotations

from kserve_llmd.simulator.request import SimRequest
from kserve_llmd.tokenizer import BuiltinTokenizer, Tokenizer


def final_text(tokenizer: Tokenizer, req: SimRequest) -> str:
    text = tokenizer.decode(req.output_token_ids)
    if isinstance(req.stop_reason, str):
        cut = text.find(req.stop_reason)
        if cut >= 0:
            text = text[:cut]
    return text


class TextStream:
    """Yields the text added by each new output token of one request."""

    def __init__(self, tokenizer: Tokenizer, req: SimRequest) -> None:
        self._tok = tokenizer
        self._req = req
        self._builtin = tokenizer if isinstance(tokenizer, BuiltinTokenizer) else None
        self.sent_tokens = 0
        self._sent_chars = 0

    def next_delta(self) -> str:
        """The delta of the next unsent token (call while ``sent_tokens < len(output)``)."""
        req = self._req
        k = self.sent_tokens
        self.sent_tokens += 1
        last = self.sent_tokens == len(req.output_token_ids) and req.finished
        if self._builtin is not None and not (last and isinstance(req.stop_reason, str)):
            word = self._builtin.word(req.output_token_ids[k])
            delta = word if k == 0 else " " + word
        else:
            text = final_text(self._tok, req) if last else self._tok.decode(req.output_token_ids[:k + 1])
            delta = text[self._sent_chars:]
        self._sent_chars += len(delta)
        return delta
