"""The one launcher of local ``kserve-llmd`` processes (simulator, router): start, wait for ready, stop.

Used by ``LocalDeployment`` (and through it the pipelines' local target) and by the benchmark's ``bench --compare``.

- ``start(argv, name=, role=, log=, ready_file=)`` spawns ``argv + ["--ready-file", ready_file]`` detached in its own
  session (pid == process group id), stdin ``/dev/null``, stdout and stderr appended to ``log``. Never a pipe: a
  child holding a pipe the parent must drain (a KFP step's stdout) keeps that reader waiting until the child exits.
  ``posix_spawn`` keeps no ``Popen`` object, so the child may outlive this process (a pipeline step) and any
  process can stop it later from its ``ProcessRecord`` alone.
- ``ready(record)`` is one non-blocking look: the record with the ready JSON (docs/CONTRACTS.md) once the file
  exists, ``None`` before, ``ProcessExitedError`` (exit code when known, log tail) when the child is gone.
  ``wait_ready(record, deadline, ...)`` loops on it with an injected clock and sleep; async callers loop themselves.
- ``stop(record)`` signals the process GROUP (SIGTERM, then SIGKILL after ``grace``) only while the process is
  still ours: this process's unreaped child (its pid cannot be reused), or a pid whose ``/proc/<pid>/cmdline``
  still equals ``record.argv`` (a reused pid is never signalled). It returns once the child is reaped (an exiting
  process loses its cmdline before it becomes a zombie: the cmdline alone would leave zombies behind).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from kserve_llmd.errors import NotReadyError
from kserve_llmd.types import JSON, Clock


class ProcessRecord(BaseModel):
    """A started process, as JSON: enough for any process on this machine to find, wait for or stop it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)  # unique within its owner, e.g. "engines", "prefill-engines", "router"
    role: str = Field(min_length=1)  # what runs: "sim", "router"
    pid: int = Field(gt=1)
    argv: tuple[str, ...]  # exactly as spawned (``--ready-file`` included): the identity check of ``stop``
    log: str
    ready_file: str
    ready: JSON = Field(default_factory=dict)  # the ready file's JSON, once read


class ProcessExitedError(NotReadyError):
    """The process exited before it wrote its ready file."""

    def __init__(self, record: ProcessRecord, returncode: int | None, context: str = "") -> None:
        self.record, self.returncode, self.log_tail = record, returncode, tail(record.log)
        code = f"exited with code {returncode}" if returncode is not None else "exited"
        super().__init__(
            f"{context}the {record.role} process exited before it was ready: {record.name} {code} "
            f"(log {record.log}):\n{self.log_tail}",
            param=record.name,
        )


def start(argv: Sequence[str], *, name: str, role: str, log: Path, ready_file: Path,
          env: Mapping[str, str] | None = None) -> ProcessRecord:
    """Spawn ``argv --ready-file READY_FILE`` detached; see the module docstring. A stale ready file is removed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    ready_file.parent.mkdir(parents=True, exist_ok=True)
    ready_file.unlink(missing_ok=True)
    full = (*argv, "--ready-file", str(ready_file))
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        pid = os.posix_spawnp(
            full[0], full, {**os.environ, **(env or {})},
            file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                          (os.POSIX_SPAWN_DUP2, fd, 1), (os.POSIX_SPAWN_DUP2, fd, 2)],
            setsid=True, setsigmask=(), setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM),
        )  # fmt: skip
    finally:
        os.close(fd)
    _await_exec(pid, full)
    return ProcessRecord(name=name, role=role, pid=pid, argv=full, log=str(log), ready_file=str(ready_file))


def ready(record: ProcessRecord, *, context: str = "") -> ProcessRecord | None:
    """The record with its ready JSON once the ready file exists; None before; ``ProcessExitedError`` if gone.
    ``context`` prefixes error messages (e.g. ``"stable: "``)."""
    path = Path(record.ready_file)
    if path.exists():
        data: JSON = json.loads(path.read_text())
        return record.model_copy(update={"ready": data})
    try:
        done, status = os.waitpid(record.pid, os.WNOHANG)
    except ChildProcessError:  # not our child (started by another process): only its command line tells
        if cmdline(record.pid) != record.argv:
            raise ProcessExitedError(record, None, context) from None
        return None
    if done == record.pid:
        raise ProcessExitedError(record, os.waitstatus_to_exitcode(status), context)
    return None


def wait_ready(record: ProcessRecord, deadline: float, *, timeout: float, context: str = "",
               clock: Clock = time.monotonic, sleep: Callable[[float], None] = time.sleep,
               poll: float = 0.05) -> ProcessRecord:
    """``ready`` until it answers or ``clock() >= deadline`` (``NotReadyError``; ``timeout`` is for the message)."""
    while (done := ready(record, context=context)) is None:
        if clock() >= deadline:
            raise NotReadyError(
                f"{context}the {record.role} did not write {Path(record.ready_file).name} within {timeout:g} s "
                f"({record.name}, log {record.log}):\n{tail(record.log)}",
                param=record.name,
            )
        sleep(poll)
    return done


def cmdline(pid: int) -> tuple[str, ...] | None:
    """The command line of a live (non-zombie) process, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
        return None
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0")[:-1])


def is_running(record: ProcessRecord) -> bool:
    """True while the pid is alive AND runs the recorded argv (never a reused pid). Our own child counts until it
    is reaped (this reaps it once it has exited): while it exits its cmdline is already empty, not yet a zombie."""
    try:
        done, _ = os.waitpid(record.pid, os.WNOHANG)
    except ChildProcessError:
        return cmdline(record.pid) == record.argv
    return done != record.pid and cmdline(record.pid) in (record.argv, (), None)


def stop(record: ProcessRecord, *, grace: float = 10.0, clock: Clock = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> bool:
    """SIGTERM the process group, SIGKILL it after ``grace`` s; only while it is still ours. True if it stopped one."""
    if not is_running(record):
        return False
    _signal_group(record.pid, signal.SIGTERM)
    deadline, killed = clock() + grace, False
    while True:
        if not is_running(record):
            return True
        if clock() >= deadline:
            if killed:
                raise OSError(f"process {record.pid} ({record.name}) survived SIGKILL for {grace:g} s")
            _signal_group(record.pid, signal.SIGKILL)
            deadline, killed = clock() + grace, True
        sleep(0.02)


def _await_exec(pid: int, argv: tuple[str, ...], limit: float = 5.0) -> None:
    """Return once the child runs ``argv`` (or is gone): until its exec completes, ``/proc/<pid>/cmdline`` is empty
    or still the parent's, and the identity check of ``is_running`` would call a starting process dead."""
    deadline = time.monotonic() + limit
    while cmdline(pid) not in (argv, None) and time.monotonic() < deadline:
        time.sleep(0.001)


def tail(path: str, lines: int = 20) -> str:
    """The last lines of a log file (for error messages)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # spawned with setsid: the group is the process and anything it forked
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

