"""The ``local`` target: simulator engines + router as detached local processes, described by a ``DeploymentState``.

Start-up follows the CLI contract (docs/CONTRACTS.md): ``kserve-llmd sim --ready-file`` writes the engines' URLs,
then ``kserve-llmd router --ready-file`` fronts them; the deployment is Ready when the router lists the model on
``/v1/models``. Every wait is bounded by ``ready_timeout_s`` on an injected clock; on ANY failure the processes this
call started are stopped before the error propagates. ``delete`` works from the state alone (another process), and
``cleanup_workdir`` stops whatever any deployment in a work folder left running (from a ledger written at spawn).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from kserve_llmd.errors import ConfigError, NotReadyError
from kserve_llmd.rollout import procs
from kserve_llmd.rollout.backends import put_traffic
from kserve_llmd.rollout.spec import DeploySpec
from kserve_llmd.rollout.state import DeploymentState, ProcessRef
from kserve_llmd.router.traffic import TrafficUpdate
from kserve_llmd.types import Clock

_CLI = (sys.executable, "-m", "kserve_llmd")
#: Every process a deployment starts is appended here (one JSON ``ProcessRef`` per line) the moment it starts.
LEDGER = "processes.jsonl"


class LocalBackend:
    def __init__(self, *, clock: Clock = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep

    def deploy(self, spec: DeploySpec) -> DeploymentState:
        if not spec.workdir:
            raise ConfigError("workdir: the local target needs a folder for logs and ready files", param="workdir")
        folder = Path(spec.workdir) / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        deadline = self._clock() + spec.ready_timeout_s
        started: list[ProcessRef] = []
        try:
            sim = self._start(started, "sim", self._sim_argv(spec, folder / "sim.ready.json"), folder)
            engines = self._wait_file(folder / "sim.ready.json", sim, deadline, spec)["engines"]
            router_argv = self._router_argv(spec, engines, folder / "router.ready.json")
            router = self._start(started, "router", router_argv, folder)
            url = str(self._wait_file(folder / "router.ready.json", router, deadline, spec)["url"])
            self._wait_model(url, spec, deadline)
            state = DeploymentState(
                name=spec.name, target="local", model=spec.model, endpoint=url,
                engines=tuple(str(e["url"]) for e in engines), processes=tuple(started), workdir=str(folder),
            )  # fmt: skip
        except BaseException:
            self._stop_all(started)
            raise
        (folder / "state.json").write_text(state.to_json())
        return state

    def delete(self, state: DeploymentState) -> None:
        self._stop_all(list(state.processes))

    def set_traffic(self, router: DeploymentState, model: str, update: TrafficUpdate | None) -> None:
        put_traffic(router.endpoint, model, update)

    # ------------------------------------------------------------------------------------------------ helpers

    @staticmethod
    def _sim_argv(spec: DeploySpec, ready: Path) -> tuple[str, ...]:
        return (
            *_CLI, "sim", "--port", "0", "--engines", str(spec.engines), "--model", spec.model,
            "--profile", spec.profile, "--time-scale", f"{spec.time_scale:g}", "--seed", str(spec.seed),
            "--ready-file", str(ready), *spec.sim_args,
        )  # fmt: skip

    @staticmethod
    def _router_argv(spec: DeploySpec, engines: list[dict[str, str]], ready: Path) -> tuple[str, ...]:
        endpoints = [f"{e['url']}={e['kv_events']}" if e.get("kv_events") else e["url"] for e in engines]
        argv = [*_CLI, "router", "--port", "0", "--preset", spec.router_preset, "--ready-file", str(ready)]
        for endpoint in endpoints:
            argv += ["--endpoint", endpoint]
        return tuple(argv)

    def _start(self, started: list[ProcessRef], role: str, argv: tuple[str, ...], folder: Path) -> ProcessRef:
        log = folder / f"{role}.log"
        ref = ProcessRef(pid=procs.spawn_detached(argv, log), role=role, argv=argv, log=str(log))  # type: ignore[arg-type]
        started.append(ref)
        with (folder / LEDGER).open("a") as ledger:  # recorded at once: cleanup_workdir finds it even if we die
            ledger.write(ref.model_dump_json() + "\n")
        return ref

    def _wait_file(self, path: Path, proc: ProcessRef, deadline: float, spec: DeploySpec) -> dict[str, Any]:
        while not path.exists():
            if not procs.is_running(proc.pid, proc.argv):
                raise NotReadyError(
                    f"{spec.name}: the {proc.role} process exited before it was ready:\n{_tail(proc.log)}"
                )
            if self._clock() >= deadline:
                raise NotReadyError(
                    f"{spec.name}: the {proc.role} did not write {path.name} within {spec.ready_timeout_s:g} s "
                    f"(log {proc.log}):\n{_tail(proc.log)}"
                )
            self._sleep(0.05)
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def _wait_model(self, url: str, spec: DeploySpec, deadline: float) -> None:
        last = "no answer yet"
        while True:
            last = asyncio.run(_probe_models(url, spec.model)) or ""
            if not last:
                return
            if self._clock() >= deadline:
                raise NotReadyError(
                    f"{spec.name}: router {url} did not serve model {spec.model!r} within {spec.ready_timeout_s:g} s "
                    f"(last: {last})"
                )
            self._sleep(0.1)

    @staticmethod
    def _stop_all(refs: list[ProcessRef]) -> None:
        # Router first (it fronts the engines), then the engines; each only if it is still the process we started.
        for ref in sorted(refs, key=lambda r: r.role != "router"):
            procs.stop(ref.pid, ref.argv)


async def _probe_models(url: str, model: str) -> str | None:
    """``None`` when ``url/v1/models`` lists ``model``; otherwise what was wrong."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(url.rstrip("/") + "/v1/models") as response,
        ):
            if response.status != 200:
                return f"HTTP {response.status}"
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    ids = [m.get("id") for m in body.get("data", [])]
    return None if model in ids else f"models {ids}"


def _tail(path: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def cleanup_workdir(workdir: str | Path) -> int:
    """Stop every process any deployment under ``workdir`` started that still runs (the safety net of local runs,
    whatever step failed and however). Returns how many were stopped."""
    refs = [
        ProcessRef.model_validate_json(line)
        for ledger in sorted(Path(workdir).glob(f"*/{LEDGER}"))
        for line in ledger.read_text().splitlines()
        if line.strip()
    ]
    return sum(procs.stop(ref.pid, ref.argv) for ref in sorted(refs, key=lambda r: r.role != "router"))
