"""``LocalDeployment``: the same ``Deployment`` interface as ``LLMDeployment``, run as local processes (the embedded
default: simulated engines, no GPU, no cluster).

    with LocalDeployment(decode=PoolSpec(replicas=2), time_scale=0.1) as dep:   # apply + wait_ready
        print(dep.endpoint)                                                      # http://127.0.0.1:PORT

Plan (``render()``): one ``kserve-llmd sim`` process per pool (``--role prefill|decode``, or ``both`` without a
prefill pool) with ``--engines N --port 0``, then ``kserve-llmd router --prefill/--decode/--endpoint URL=ZMQ
--preset P --port 0``; every process through the one launcher (``sdk/processes.py``: detached, ``--ready-file``,
output to ``WORKDIR/<name>/<role>.log``). ``apply()`` starts the engines, waits for their ready files, starts the
router; ``wait_ready()`` waits for the router's ready file, a 200 from ``/health`` and the model on ``/v1/models``.
``delete()`` stops each process group (router first; SIGTERM, SIGKILL after ``grace``).

Ownership: the object that ``apply()``-ed owns the processes, and a finalizer stops them if it is dropped or the
interpreter exits. ``detach()`` hands them over instead (a pipeline step that exits while they keep serving):
``state()`` is JSON, written to ``WORKDIR/deployment.json`` each time a process starts (the ledger a safety net
reads), and ``LocalDeployment.from_state(state).delete()`` stops them from any other process on this machine.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kserve_llmd.errors import ConfigError, NotReadyError
from kserve_llmd.sdk import processes
from kserve_llmd.sdk.processes import ProcessRecord
from kserve_llmd.sdk.specs import PoolSpec, RouterSpec
from kserve_llmd.types import JSON, Clock

#: The deployment's state in its work directory, rewritten each time a process starts.
STATE_FILE = "deployment.json"


class LocalDeployment:
    """See the module docstring. Construction does no I/O."""

    def __init__(
        self,
        model: str = "sim-model",
        *,
        name: str = "local",
        prefill: PoolSpec | None = None,
        decode: PoolSpec | None = None,
        router: RouterSpec | None = None,
        profile: str = "tiny",
        time_scale: float = 1.0,
        port: int = 0,
        host: str = "127.0.0.1",
        sim_args: tuple[str, ...] = (),
        router_args: tuple[str, ...] = (),
        workdir: str | Path | None = None,
        grace: float = 5.0,
        python: str = sys.executable,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        poll: float = 0.05,
    ) -> None:
        self.model, self.name = model, name
        self.prefill = prefill if prefill is not None else PoolSpec(replicas=0)
        self.decode = decode if decode is not None else PoolSpec(replicas=1)
        self.router = router if router is not None else RouterSpec()
        if self.decode.replicas < 1:
            raise ValueError("decode.replicas must be at least 1")
        self.profile, self.time_scale, self.port, self.host = profile, time_scale, port, host
        self._sim_args, self._router_args = sim_args, router_args
        self._grace, self._python = grace, python
        self._clock, self._sleep, self._poll = clock, sleep, poll
        self._workdir = Path(workdir) if workdir is not None else None
        self._owns_workdir = False  # True for the temporary directory apply() creates (removed by delete)
        self._records: list[ProcessRecord] = []
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

    def _sim_command(self, role: str, pool: PoolSpec) -> list[str]:
        return [self._python, "-m", "kserve_llmd", "sim", "--host", self.host, "--port", "0", "--engines",
                str(pool.replicas), "--model", self.model, "--role", role, "--profile", self.profile,
                "--time-scale", f"{self.time_scale:g}", *pool.extra_args, *self._sim_args]

    def _router_command(self, engines: Sequence[JSON]) -> list[str]:
        flags = {"prefill": "--prefill", "decode": "--decode", "both": "--endpoint"}
        endpoint_args = [arg for e in engines for arg in (flags[e["role"]], endpoint_spec(e))]
        return [self._python, "-m", "kserve_llmd", "router", "--host", self.host, "--port", str(self.port),
                "--preset", self.preset, *endpoint_args, *self._router_args]

    def _files(self, base: Path, name: str, role: str) -> tuple[Path, Path]:
        return base / name / f"{role}.log", base / name / f"{role}.ready.json"

    def render(self) -> list[JSON]:
        """The process plan: one entry per process, ``{"name", "command", "log", "ready_file"}``. The router's
        engine arguments are known once the engines are up; the plan shows them as ``{ENGINES}``."""
        base = self._workdir or Path(tempfile.gettempdir()) / "kserve-llmd-XXXX"
        steps = [(name, "sim", self._sim_command(role, pool)) for name, role, pool in self._pools()]
        steps.append(("router", "router", [*self._router_command([]), "{ENGINES}"]))
        plan: list[JSON] = []
        for name, role, command in steps:
            log, ready = self._files(base, name, role)
            plan.append({"name": name, "command": [*command, "--ready-file", str(ready)], "log": str(log),
                         "ready_file": str(ready)})
        return plan

    # ------------------------------------------------------------------------------------------- lifecycle
    def apply(self, timeout: float = 120.0) -> None:
        """Start the engines, wait until they listen, then start the router (not yet waited for)."""
        if self._records:
            raise RuntimeError("already applied; delete() first")
        if self._workdir is None:
            self._workdir, self._owns_workdir = Path(tempfile.mkdtemp(prefix="kserve-llmd-")), True
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._refuse_running_ledger(self._workdir / STATE_FILE)
        self._finalizer = weakref.finalize(self, _stop_all, self._records, self._grace,
                                           self._workdir if self._owns_workdir else None)
        try:
            deadline = self._clock() + timeout
            for name, role, pool in self._pools():
                self._start(name, "sim", self._sim_command(role, pool))
            for i, record in enumerate(list(self._records)):
                self._records[i] = self._wait_file(record, deadline, timeout)
            self._start("router", "router", self._router_command(self.engines))
        except BaseException:
            self.delete()
            raise

    def _refuse_running_ledger(self, path: Path) -> None:
        if path.exists() and LocalDeployment.from_state(json.loads(path.read_text())).running():
            raise ConfigError(f"workdir: {path.parent} holds a deployment that is still running; delete it first",
                              param="workdir")

    def _start(self, name: str, role: str, command: list[str]) -> None:
        assert self._workdir is not None
        log, ready = self._files(self._workdir, name, role)
        self._records.append(processes.start(command, name=name, role=role, log=log, ready_file=ready))
        self._save()  # at once: whoever reads the ledger finds the process even if this one dies now

    def _save(self) -> None:
        if self._workdir is None:
            return
        tmp = self._workdir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(self.state()))
        tmp.replace(self._workdir / STATE_FILE)

    def _wait_file(self, record: ProcessRecord, deadline: float, timeout: float) -> ProcessRecord:
        return processes.wait_ready(record, deadline, timeout=timeout, context=f"{self.name}: ", clock=self._clock,
                                    sleep=self._sleep, poll=self._poll)

    def wait_ready(self, timeout: float = 120.0) -> str:
        """Wait for the router's ready file, a 200 from ``/health`` and the model on ``/v1/models``; return its URL."""
        index = next((i for i, r in enumerate(self._records) if r.name == "router"), None)
        if index is None:
            raise NotReadyError("nothing is running: call apply() first")
        deadline = self._clock() + timeout
        router = self._records[index] = self._wait_file(self._records[index], deadline, timeout)
        url = str(router.ready["url"])
        while (problem := _serving(url, self.model)) is not None:
            if self._clock() >= deadline:
                raise NotReadyError(f"{self.name}: router {url} not serving {self.model!r} after {timeout:g} s "
                                    f"({problem})", param="health")
            self._sleep(self._poll)
        self._endpoint = url
        self._save()
        return url

    @property
    def endpoint(self) -> str:
        if self._endpoint is None:
            raise NotReadyError("not ready: call apply() and wait_ready() first")
        return self._endpoint

    @property
    def engines(self) -> list[JSON]:
        """The engines' ready-file entries (``url``, ``kv_events``, ``replay``, ``role``, ``model``)."""
        return [e for r in self._records if r.role == "sim" for e in r.ready.get("engines", [])]

    @property
    def processes(self) -> tuple[ProcessRecord, ...]:
        """The started processes, in start order."""
        return tuple(self._records)

    def running(self) -> bool:
        """Whether any of the started processes still runs."""
        return any(processes.is_running(r) for r in self._records)

    def logs(self, name: str) -> str:
        """The combined output of one process so far (``router``, ``engines``, ``prefill-engines``, ...)."""
        record = next((r for r in self._records if r.name == name), None)
        path = Path(record.log) if record is not None else None
        return path.read_text(errors="replace") if path is not None and path.exists() else ""

    def stop(self) -> int:
        """Stop every process still running (router first). Returns how many were stopped."""
        return _stop_all(self._records, self._grace, None)

    def delete(self) -> None:
        """Stop every process (router first): SIGTERM, then SIGKILL after ``grace`` seconds. Idempotent."""
        self.stop()
        if self._finalizer is not None:
            self._finalizer()  # removes a temporary work directory; the processes are already gone
            self._finalizer = None
        elif self._owns_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._records.clear()
        self._endpoint = None

    # ------------------------------------------------------------------------------------------- hand-over
    def state(self) -> JSON:
        """JSON-serialisable: everything ``from_state`` needs to find, use or stop these processes elsewhere."""
        return {"name": self.name, "model": self.model, "endpoint": self._endpoint, "grace": self._grace,
                "workdir": str(self._workdir) if self._workdir else None, "owns_workdir": self._owns_workdir,
                "processes": [r.model_dump(mode="json") for r in self._records]}

    @classmethod
    def from_state(cls, state: JSON) -> LocalDeployment:
        """A handle on processes another object started (no finalizer: dropping it stops nothing)."""
        dep = cls(str(state["model"]), name=str(state["name"]), grace=float(state["grace"]),
                  workdir=state.get("workdir"))
        dep._owns_workdir = bool(state.get("owns_workdir"))
        dep._records.extend(ProcessRecord.model_validate(p) for p in state["processes"])
        dep._endpoint = state.get("endpoint")
        return dep

    def detach(self) -> JSON:
        """Let the processes outlive this object (no finalizer); returns ``state()`` for ``from_state``."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        return self.state()

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


def _serving(url: str, model: str) -> str | None:
    """None when ``/health`` answers 200 and ``/v1/models`` lists ``model``; otherwise what is wrong."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            if response.status != 200:
                return f"/health answered {response.status}"
        with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as response:
            ids = [m.get("id") for m in json.loads(response.read()).get("data", [])]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if model in ids else f"/v1/models lists {ids}"


def _stop_all(records: list[ProcessRecord], grace: float, workdir: Path | None) -> int:
    """Stop the processes, last started first; remove ``workdir`` if given. Returns how many were running."""
    stopped = sum(processes.stop(r, grace=grace) for r in reversed(records))
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)
    return stopped


def endpoint_spec(engine: JSON) -> str:
    """``URL=PUB,REPLAY`` (or less) for the router's ``--endpoint``, from a simulator ready-file entry."""
    if not engine.get("kv_events"):
        return str(engine["url"])
    if engine.get("replay"):
        return f"{engine['url']}={engine['kv_events']},{engine['replay']}"
    return f"{engine['url']}={engine['kv_events']}"
