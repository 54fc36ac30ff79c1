"""Detached local processes that outlive the pipeline step that started them, and stopping them from another step.

``spawn_detached`` starts the process through a short-lived launcher, so the process is NOT a child of the caller:
it survives the step's exit, leaves no zombie and no ``Popen`` object behind, and runs in its own session (pid ==
process group). Its stdin is closed and its output goes to a log file: a process that inherited the step's stdout
would keep the KFP runner waiting for the pipe to close.

``stop`` signals a pid only when ``/proc/<pid>/cmdline`` still equals the command line recorded at spawn time, so a
recycled pid is never killed. SIGTERM first (clean shutdown is part of the CLI contract), SIGKILL after ``grace``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kserve_llmd.types import Clock

_LAUNCHER = """\
import subprocess, sys
log = open(sys.argv[1], "ab")
proc = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True, close_fds=True)
print(proc.pid, flush=True)
"""


def spawn_detached(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> int:
    """Start ``argv`` detached (own session, output appended to ``log``); return its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(log), *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        check=False,
    )
    if result.returncode != 0:
        raise OSError(f"could not start {argv[0]}: {result.stderr.strip() or result.returncode}")
    return int(result.stdout.strip())


def cmdline(pid: int) -> tuple[str, ...] | None:
    """The command line of a live (non-zombie) process, or ``None`` when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
        return None
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0")[:-1])


def is_running(pid: int, argv: Sequence[str]) -> bool:
    """True when ``pid`` is alive AND still runs ``argv`` (not a recycled pid)."""
    return cmdline(pid) == tuple(argv)


def stop(
    pid: int,
    argv: Sequence[str],
    *,
    grace: float = 10.0,
    clock: Clock = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Stop the process if it is still ours. Returns True if it was running and is now gone."""
    if not is_running(pid, argv):
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = clock() + grace
    killed = False
    while is_running(pid, argv):
        if clock() >= deadline:
            if killed:
                raise OSError(f"process {pid} ({argv[0]}) survived SIGKILL for {grace:g} s")
            _signal_group(pid, signal.SIGKILL)
            killed, deadline = True, clock() + grace
        _reap(pid)
        sleep(0.02)
    _reap(pid)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # spawned with start_new_session: the group is the process and anything it forked
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pid: int) -> None:
    """If the process happens to be our child (tests that spawn directly), collect it so it is not a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
