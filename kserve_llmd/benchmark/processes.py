"""Child ``kserve-llmd`` processes (simulator, router) for ``bench --compare``/``demo``: an async context manager
over the SDK's one launcher (``kserve_llmd.sdk.processes``).

Entering starts the child (detached, own session, output to ``log_path``) and waits until it has written its ready
file (the JSON of docs/CONTRACTS.md); leaving stops its process group (SIGTERM, SIGKILL after ``stop_timeout_s``).
A child that dies before it is ready is reported with its exit code and log tail (``ProcessStartError``).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from kserve_llmd.errors import KserveLlmdError
from kserve_llmd.sdk import processes
from kserve_llmd.sdk.processes import ProcessExitedError, ProcessRecord

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
        self._process: ProcessRecord | None = None
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
        self.log_path.unlink(missing_ok=True)  # one log per run (the launcher appends)
        self._process = processes.start([sys.executable, "-m", "kserve_llmd", *self.args], name=self.name,
                                        role=self.args[0], log=self.log_path,
                                        ready_file=Path(self._tmp.name) / "ready.json")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout_s
        while True:
            try:
                done = processes.ready(self._process)
            except ProcessExitedError as exc:
                raise ProcessStartError(f"{self.name} exited with {exc.returncode} before it was ready:\n"
                                        f"{exc.log_tail}") from None
            if done is not None:
                self._process, self.ready = done, done.ready
                return self.ready
            if loop.time() > deadline:
                raise ProcessStartError(f"{self.name} not ready after {self.ready_timeout_s:g} s:\n"
                                        f"{processes.tail(str(self.log_path))}")
            await asyncio.sleep(_POLL_S)

    async def aclose(self) -> None:
        record, self._process = self._process, None
        if record is not None:
            await asyncio.to_thread(processes.stop, record, grace=self.stop_timeout_s)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
