"""A dependency-free progress bar on stderr: redrawn in place on a terminal, one line per level otherwise."""

from __future__ import annotations

import sys
from typing import TextIO

_WIDTH = 30


class Progress:
    def __init__(self, label: str, total: int | None, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.failed = 0
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = enabled
        self._tty = enabled and self._stream.isatty()

    def advance(self, ok: bool) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        if self._tty:
            self._stream.write("\r" + self._line())
            self._stream.flush()

    def close(self) -> None:
        if not self._enabled:
            return
        self._stream.write(("\r" if self._tty else "") + self._line() + "\n")
        self._stream.flush()

    def _line(self) -> str:
        failed = f" ({self.failed} failed)" if self.failed else ""
        if self.total:
            filled = min(_WIDTH, _WIDTH * self.done // self.total)
            return f"{self.label} [{'#' * filled}{'.' * (_WIDTH - filled)}] {self.done}/~{self.total}{failed}"
        return f"{self.label} {self.done} requests{failed}"
