"""Workloads: each a generator of ``BenchRequest`` from a seeded ``random.Random``.

Prompts are made of the built-in tokenizer's synthetic words (``word_for_id``), one token per word, so prompt
lengths are exact under the simulator and the router's default tokenizer.

- ``shared-prefix`` (inference-perf's ``shared_prefix``): ``num_groups`` system prompts of ``system_prompt_len``
  tokens, each followed by ``prompts_per_group`` distinct questions of ``question_len`` tokens. ``order``:
  ``inference-perf`` (default) shuffles the groups × prompts ONCE and cycles through that fixed order, and every
  level of the ladder starts again from its first prompt, as inference-perf does (its generator shuffles once at
  start-up and its load generator calls ``get_data()`` afresh for every stage); ``reshuffled`` is one stream
  through the whole run, reshuffled after every full pass (this harness's original order).
- ``multi-turn``: chat sessions with a growing history (system prompt, then user/assistant turns); each request
  carries ``x-session-id``. Turns are sent in waves (turn k of every session before turn k+1 of any), so the
  previous turn of a session has usually finished before the next one starts. Assistant turns in the history are
  the workload's own synthetic replies of ``output_len`` tokens (the engine's text is not fed back).
- ``random``: low sharing: every prompt is fresh random words.
- ``trace``: JSONL replay (see ``trace.py``).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from kserve_llmd.benchmark.distributions import Length, mean_length, sample_length
from kserve_llmd.benchmark.records import BenchRequest
from kserve_llmd.tokenizer import word_for_id

#: Words are drawn from ids [0, VOCAB) so that every word is in the built-in tokenizer's vocabulary.
VOCAB = 32000


def random_words(rng: random.Random, n: int) -> str:
    """``n`` random synthetic words: exactly ``n`` tokens under the built-in tokenizer."""
    return " ".join(word_for_id(rng.randrange(VOCAB)) for _ in range(n))


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def restarts_each_level(self) -> bool:
        """True when every level of the ladder replays the workload from its start (a fresh ``generate``)."""
        return False


class SharedPrefix(_Base):
    type: Literal["shared-prefix"] = "shared-prefix"
    num_groups: int = Field(ge=1)
    prompts_per_group: int = Field(ge=1)
    system_prompt_len: Length
    question_len: Length
    output_len: Length
    order: Literal["inference-perf", "reshuffled"] = "inference-perf"

    def restarts_each_level(self) -> bool:
        return self.order == "inference-perf"

    def mean_prompt_tokens(self) -> float:
        return mean_length(self.system_prompt_len) + mean_length(self.question_len)

    def generate(self, rng: random.Random) -> Iterator[BenchRequest]:
        systems = [random_words(rng, sample_length(self.system_prompt_len, rng)) for _ in range(self.num_groups)]
        prompts: list[tuple[int, str, int]] = []
        for group, system in enumerate(systems):
            for _ in range(self.prompts_per_group):
                prompt = f"{system} {random_words(rng, sample_length(self.question_len, rng))}"
                prompts.append((group, prompt, sample_length(self.output_len, rng)))
        counter = itertools.count()
        order = list(range(len(prompts)))
        rng.shuffle(order)
        while True:
            for i in order:
                group, prompt, output = prompts[i]
                yield BenchRequest(index=next(counter), prompt=prompt, max_tokens=output,
                                   prompt_tokens=prompt.count(" ") + 1, group=f"g{group}")
            if self.order == "reshuffled":
                order = list(range(len(prompts)))
                rng.shuffle(order)


class MultiTurn(_Base):
    type: Literal["multi-turn"] = "multi-turn"
    num_sessions: int = Field(ge=1)
    turns: int = Field(ge=1)
    system_prompt_len: Length
    user_len: Length
    output_len: Length

    def mean_prompt_tokens(self) -> float:
        mean_turn = mean_length(self.user_len) + mean_length(self.output_len)
        return mean_length(self.system_prompt_len) + mean_turn * (self.turns - 1) / 2 + mean_length(self.user_len)

    def generate(self, rng: random.Random) -> Iterator[BenchRequest]:
        counter = itertools.count()
        for wave in itertools.count():
            sessions = [f"s{wave}-{i}" for i in range(self.num_sessions)]
            history: dict[str, list[dict[str, str]]] = {
                sid: [{"role": "system", "content": random_words(rng, sample_length(self.system_prompt_len, rng))}]
                for sid in sessions
            }
            for _turn in range(self.turns):
                order = sessions[:]
                rng.shuffle(order)
                for sid in order:
                    messages = history[sid]
                    messages.append({"role": "user", "content": random_words(rng, sample_length(self.user_len, rng))})
                    output = sample_length(self.output_len, rng)
                    yield BenchRequest(index=next(counter), messages=tuple(dict(m) for m in messages),
                                       max_tokens=output, headers=(("x-session-id", sid),), group=sid)
                    messages.append({"role": "assistant", "content": random_words(rng, output)})


class RandomPrompts(_Base):
    type: Literal["random"] = "random"
    prompt_len: Length
    output_len: Length

    def mean_prompt_tokens(self) -> float:
        return mean_length(self.prompt_len)

    def generate(self, rng: random.Random) -> Iterator[BenchRequest]:
        for index in itertools.count():
            n = sample_length(self.prompt_len, rng)
            yield BenchRequest(index=index, prompt=random_words(rng, n), max_tokens=sample_length(self.output_len, rng),
                               prompt_tokens=n)


class Trace(_Base):
    type: Literal["trace"] = "trace"
    path: str
    block_size: int = Field(default=512, ge=1)  # tokens per ``hash_ids`` entry (Mooncake traces use 512)
    default_output_len: int = Field(default=128, ge=1)
    loop: bool = False  # start again when the trace ends (arrival times then come from the load, not the trace)

    def mean_prompt_tokens(self) -> float:
        from kserve_llmd.benchmark.trace import mean_prompt_tokens

        return mean_prompt_tokens(self)

    def generate(self, rng: random.Random) -> Iterator[BenchRequest]:
        from kserve_llmd.benchmark.trace import replay

        return replay(self, rng)


WorkloadSpec = Annotated[SharedPrefix | MultiTurn | RandomPrompts | Trace, Field(discriminator="type")]
