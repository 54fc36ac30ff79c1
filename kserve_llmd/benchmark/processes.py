"""Child ``kserve-llmd`` processes (simulator, router) started with ``--ready-file`` and always stopped.

``ManagedProcess`` is an async context manager: entering starts the child and waits until it has written its ready
file (the JSON of docs/CONTRACTS.md); leaving sends SIGTERM, waits, and SIGKILLs a child that does not exit in time.
Output goes to a log file, whose tail is quoted when a child dies before it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from kserve_llmd.errors import KserveLlmdError

_POLL_S = 0.05


class ProcessStartError(KserveLlmdError):
    """A child process died or did not become ready."""

    error_type = "ProcessStartError"


class ManagedProcess:
    def __init__(self, name: str, args: list[str], log_path: Path, *, ready_timeout_s: float = 60.0,
                 stop_timeout_s: float = 10.0) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.ready: dict[str, Any] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def command(self) -> list[str]:
        return ["kserve-llmd", *self.args]

    async def __aenter__(self) -> ManagedProcess:
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def start(self) -> dict[str, Any]:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"kserve-llmd-{self.name}-")
        ready = Path(self._tmp.name) / "ready.json"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kserve_llmd", *self.args, "--ready-file", str(ready),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout_s
        while not ready.is_file():
            if self._process.returncode is not None:
                raise ProcessStartError(f"{self.name} exited with {self._process.returncode} before it was ready:\n"
                                         f"{self._log_tail()}")
            if loop.time() > deadline:
                raise ProcessStartError(f"{self.name} not ready after {self.ready_timeout_s:g} s:\n"
                                         f"{self._log_tail()}")
            await asyncio.sleep(_POLL_S)
        self.ready = orjson.loads(ready.read_bytes())
        return self.ready

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def aclose(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), self.stop_timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        elif process is not None:
            await process.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
