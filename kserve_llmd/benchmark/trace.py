"""JSONL trace replay. One request per line; recognised fields (others are ignored)::

    {"timestamp": 1200, "input_length": 2048, "output_length": 128, "hash_ids": [0, 1, 2, 7]}   # Mooncake style
    {"arrival_s": 1.2, "prompt": "free text", "max_tokens": 64, "session_id": "abc"}
    {"messages": [{"role": "user", "content": "hi"}], "output_len": 32}

- prompt: ``prompt`` text, or chat ``messages``, or ``input_length`` synthetic tokens. With ``hash_ids`` (Mooncake),
  block ``h`` is ``block_size`` words generated from seed ``h``, so equal ids mean equal (shareable) prefixes; the
  last block is cut to fit ``input_length``.
- output: ``output_length`` | ``output_len`` | ``max_tokens`` (else the workload's ``default_output_len``).
- arrival: ``timestamp`` in milliseconds or ``arrival_s`` in seconds, relative to the first line; used when the
  load says ``arrival: trace``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from kserve_llmd.benchmark.records import BenchRequest
from kserve_llmd.errors import ConfigError

if TYPE_CHECKING:
    from kserve_llmd.benchmark.workloads import Trace


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"trace file not found: {path}", param="workload.path")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not JSON: {exc}", param="workload.path") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{number}: each line must be a JSON object", param="workload.path")
        rows.append(row)
    if not rows:
        raise ConfigError(f"trace file is empty: {path}", param="workload.path")
    return rows


def _block_words(hash_id: int, block_size: int) -> list[str]:
    from kserve_llmd.benchmark.workloads import random_words

    return random_words(random.Random(hash_id), block_size).split(" ")


def _prompt(row: dict[str, Any], spec: Trace, rng: random.Random) -> tuple[str, int]:
    from kserve_llmd.benchmark.workloads import random_words

    if isinstance(row.get("prompt"), str):
        text = row["prompt"]
        return text, len(text.split())
    length = int(row.get("input_length", 0))
    words: list[str] = []
    for hash_id in row.get("hash_ids") or []:
        words.extend(_block_words(int(hash_id), spec.block_size))
    if length <= 0:
        length = max(1, len(words))
    words = words[:length]
    if len(words) < length:
        words.extend(random_words(rng, length - len(words)).split(" "))
    return " ".join(words), length


def _arrival(row: dict[str, Any]) -> float | None:
    if "arrival_s" in row:
        return float(row["arrival_s"])
    if "timestamp" in row:
        return float(row["timestamp"]) / 1000.0
    return None


def replay(spec: Trace, rng: random.Random) -> Iterator[BenchRequest]:
    rows = _lines(Path(spec.path))
    first = next((a for a in map(_arrival, rows) if a is not None), 0.0)
    counter = itertools.count()
    while True:
        for row in rows:
            output = int(next((row[k] for k in ("output_length", "output_len", "max_tokens") if k in row),
                              spec.default_output_len))
            session = row.get("session_id")
            headers = (("x-session-id", str(session)),) if session is not None else ()
            arrival = _arrival(row)
            arrival = None if arrival is None or spec.loop else arrival - first
            if isinstance(row.get("messages"), list):
                yield BenchRequest(index=next(counter), messages=tuple(row["messages"]), max_tokens=output,
                                   headers=headers, group=session, arrival_s=arrival)
            else:
                prompt, n = _prompt(row, spec, rng)
                yield BenchRequest(index=next(counter), prompt=prompt, max_tokens=output, prompt_tokens=n,
                                   headers=headers, group=session, arrival_s=arrival)
        if not spec.loop:
            return


def mean_prompt_tokens(spec: Trace) -> float:
    rows = _lines(Path(spec.path))
    total = 0
    for row in rows:
        if isinstance(row.get("prompt"), str):
            total += len(row["prompt"].split())
        else:
            total += int(row.get("input_length", 0)) or len(row.get("hash_ids") or []) * spec.block_size
    return total / len(rows)
