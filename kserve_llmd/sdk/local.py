"""``LocalDeployment``: the same ``Deployment`` interface as ``LLMDeployment``, run as local processes (the embedded
default: simulated engines, no GPU, no cluster).

    with LocalDeployment(decode=PoolSpec(replicas=2), time_scale=0.1) as dep:   # apply + wait_ready
        print(dep.endpoint)                                                      # http://127.0.0.1:PORT

Plan (``render()``): one ``kserve-llmd sim`` process per pool (``--role prefill|decode``, or ``both`` without a
prefill pool) with ``--engines N --port 0 --ready-file``, then ``kserve-llmd router --prefill/--decode/--endpoint
URL=ZMQ --preset P --port 0 --ready-file``. ``apply()`` starts the engines, waits for their ready files, starts the
router; ``wait_ready()`` waits for the router's ready file and a 200 from ``/health``. ``delete()`` sends SIGTERM to
each process group (router first), then SIGKILL after ``grace`` seconds; a finalizer does the same if the object is
dropped or the interpreter exits, so no process outlives its owner.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kserve_llmd.errors import NotReadyError
from kserve_llmd.sdk.specs import PoolSpec, RouterSpec
from kserve_llmd.types import JSON, Clock


@dataclass(slots=True)
class _Proc:
    name: str
    command: list[str]
    ready_file: Path
    process: subprocess.Popen[bytes] | None = None
    ready: JSON = field(default_factory=dict)


class LocalDeployment:
    """See the module docstring. Construction does no I/O."""

    def __init__(
        self,
        model: str = "sim-model",
        *,
        prefill: PoolSpec | None = None,
        decode: PoolSpec | None = None,
        router: RouterSpec | None = None,
        profile: str = "tiny",
        time_scale: float = 1.0,
        port: int = 0,
        host: str = "127.0.0.1",
        sim_args: tuple[str, ...] = (),
        router_args: tuple[str, ...] = (),
        grace: float = 5.0,
        python: str = sys.executable,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        poll: float = 0.05,
    ) -> None:
        self.model = model
        self.prefill = prefill if prefill is not None else PoolSpec(replicas=0)
        self.decode = decode if decode is not None else PoolSpec(replicas=1)
        self.router = router if router is not None else RouterSpec()
        if self.decode.replicas < 1:
            raise ValueError("decode.replicas must be at least 1")
        self.profile, self.time_scale, self.port, self.host = profile, time_scale, port, host
        self._sim_args, self._router_args = sim_args, router_args
        self._grace, self._python = grace, python
        self._clock, self._sleep, self._poll = clock, sleep, poll
        self._workdir: Path | None = None
        self._procs: list[_Proc] = []
        self._endpoint: str | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def disaggregated(self) -> bool:
        return self.prefill.replicas > 0

    @property
    def preset(self) -> str:
        return self.router.preset or ("pd-decider" if self.disaggregated else "precise-prefix")

    # ------------------------------------------------------------------------------------------- plan
    def _pools(self) -> list[tuple[str, str, PoolSpec]]:
        if self.disaggregated:
            return [("prefill-engines", "prefill", self.prefill), ("decode-engines", "decode", self.decode)]
        return [("engines", "both", self.decode)]

    def _sim_command(self, role: str, pool: PoolSpec, ready_file: str) -> list[str]:
        return [self._python, "-m", "kserve_llmd", "sim", "--host", self.host, "--port", "0", "--engines",
                str(pool.replicas), "--model", self.model, "--role", role, "--profile", self.profile,
                "--time-scale", str(self.time_scale), "--ready-file", ready_file, *pool.extra_args, *self._sim_args]

    def _router_command(self, ready_file: str, engines: list[JSON]) -> list[str]:
        flags = {"prefill": "--prefill", "decode": "--decode", "both": "--endpoint"}
        endpoint_args = [arg for e in engines for arg in (flags[e["role"]], f"{e['url']}={e['kv_events']}")]
        return [self._python, "-m", "kserve_llmd", "router", "--host", self.host, "--port", str(self.port),
                "--preset", self.preset, "--ready-file", ready_file, *endpoint_args, *self._router_args]

    def render(self) -> list[JSON]:
        """The process plan: one entry per process, ``{"name", "command", "ready_file"}``. The router's engine
        arguments are known once the engines are up; the plan shows them as ``{ENGINES}``."""
        base = str(self._workdir or Path(tempfile.gettempdir()) / "kserve-llmd-XXXX")
        plan: list[JSON] = [
            {"name": name, "command": self._sim_command(role, pool, f"{base}/{name}.json"),
             "ready_file": f"{base}/{name}.json"}
            for name, role, pool in self._pools()
        ]
        router_file = f"{base}/router.json"
        plan.append({"name": "router", "command": [*self._router_command(router_file, []), "{ENGINES}"],
                     "ready_file": router_file})
        return plan

    # ------------------------------------------------------------------------------------------- lifecycle
    def apply(self, timeout: float = 120.0) -> None:
        """Start the engines, wait until they listen, then start the router (not yet waited for)."""
        if self._procs:
            raise RuntimeError("already applied; delete() first")
        self._workdir = Path(tempfile.mkdtemp(prefix="kserve-llmd-"))
        self._finalizer = weakref.finalize(self, _stop_all, self._procs, self._grace, self._workdir)
        try:
            deadline = self._clock() + timeout
            for name, role, pool in self._pools():
                ready_file = self._workdir / f"{name}.json"
                self._start(_Proc(name, self._sim_command(role, pool, str(ready_file)), ready_file))
            engines = [e for proc in self._procs for e in self._await_ready_file(proc, deadline)["engines"]]
            ready_file = self._workdir / "router.json"
            self._start(_Proc("router", self._router_command(str(ready_file), engines), ready_file))
        except BaseException:
            self.delete()
            raise

    def _start(self, proc: _Proc) -> None:
        assert self._workdir is not None
        log = (self._workdir / f"{proc.name}.log").open("wb")
        with log:
            proc.process = subprocess.Popen(proc.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True)
        self._procs.append(proc)

    def _await_ready_file(self, proc: _Proc, deadline: float) -> JSON:
        assert proc.process is not None
        while not proc.ready_file.exists():
            code = proc.process.poll()
            if code is not None:
                raise NotReadyError(f"{proc.name} exited with code {code} before it was ready:\n{self.logs(proc.name)}")
            if self._clock() >= deadline:
                raise NotReadyError(f"{proc.name} not ready: no ready file {proc.ready_file}", param=proc.name)
            self._sleep(self._poll)
        proc.ready = json.loads(proc.ready_file.read_text())
        return proc.ready

    def wait_ready(self, timeout: float = 120.0) -> str:
        """Wait for the router's ready file and a 200 from its ``/health``; return its URL."""
        router = next((p for p in self._procs if p.name == "router"), None)
        if router is None:
            raise NotReadyError("nothing is running: call apply() first")
        deadline = self._clock() + timeout
        url = str(self._await_ready_file(router, deadline)["url"])
        while not _healthy(url):
            if self._clock() >= deadline:
                raise NotReadyError(f"router {url} /health is not 200 after {timeout:g}s", param="health")
            self._sleep(self._poll)
        self._endpoint = url
        return url

    @property
    def endpoint(self) -> str:
        if self._endpoint is None:
            raise NotReadyError("not ready: call apply() and wait_ready() first")
        return self._endpoint

    @property
    def engines(self) -> list[JSON]:
        """The engines' ready-file entries (``url``, ``kv_events``, ``replay``, ``role``, ``model``)."""
        return [e for p in self._procs if p.name != "router" for e in p.ready.get("engines", [])]

    def logs(self, name: str) -> str:
        """The combined output of one process so far (``router``, ``engines``, ``prefill-engines``, ...)."""
        path = (self._workdir or Path(".")) / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def delete(self) -> None:
        """Stop every process (router first): SIGTERM, then SIGKILL after ``grace`` seconds. Idempotent."""
        _stop_all(self._procs, self._grace, None)
        if self._finalizer is not None:
            self._finalizer()  # removes the work directory; the processes are already gone
            self._finalizer = None
        self._procs = []
        self._endpoint = None

    def __enter__(self) -> LocalDeployment:
        self.apply()
        try:
            self.wait_ready()
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop_all(procs: list[_Proc], grace: float, workdir: Path | None) -> None:
    """SIGTERM each process group (last started first), wait up to ``grace`` s, SIGKILL what is left."""
    running = [p.process for p in reversed(procs) if p.process is not None and p.process.poll() is None]
    for process in running:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
    for p in procs:
        if p.process is not None and p.process.returncode is None:
            p.process.wait()
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
