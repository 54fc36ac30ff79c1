"""Port-clash handling of ``RealVllm.start`` without vLLM: the spawn is replaced by a fake that writes a log."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import kserve_llmd.realvllm as realvllm
from kserve_llmd.realvllm import RealVllm, RealVllmError
from kserve_llmd.realvllm.ports import free_ports, log_shows_port_clash, taken_ports

ZMQ_CLASH = "zmq.error.ZMQError: Address already in use (addr='tcp://*:5557')"
UVICORN_CLASH = "ERROR: [Errno 98] error while attempting to bind on address ('127.0.0.1', 8000): address in use"
TRACEBACK = [f'  File "/venv/lib/python3.11/site-packages/vllm/module{i}.py", line {i}, in f{i}' for i in range(100)]


class FakeVllm(RealVllm):
    """Each start attempt writes the next scripted log; a log given as None is a healthy start."""

    def __init__(self, logs: list[list[str] | None], tmp: Path, *, port: int = 0) -> None:
        super().__init__(log_dir=tmp, port=port)
        self.logs = logs
        self.attempts: list[tuple[int, int, int]] = []

    async def _spawn_and_wait(self) -> None:
        self.attempts.append((self.port, self.zmq_port, self.replay_port))
        assert self._log_dir is not None
        self.log_path = self._log_dir / f"vllm-{self.port}.log"
        lines = self.logs.pop(0)
        self.log_path.write_text("\n".join(lines or ["ready"]) + "\n")
        if lines is not None:
            raise RealVllmError(f"vLLM exited with 1 before /health:\n{self.log_tail()}")


@pytest.fixture(autouse=True)
def _set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(realvllm, "available", lambda: None)


@pytest.mark.parametrize("clash", [ZMQ_CLASH, UVICORN_CLASH])
def test_a_clash_is_found_anywhere_in_the_log_not_only_in_the_tail(tmp_path: Path, clash: str) -> None:
    log = tmp_path / "vllm.log"
    log.write_text("\n".join(["INFO starting", clash, *TRACEBACK]) + "\n")
    assert log_shows_port_clash(log)
    log.write_text("\n".join(["INFO starting", "RuntimeError: out of memory", *TRACEBACK]) + "\n")
    assert not log_shows_port_clash(log)
    assert not log_shows_port_clash(tmp_path / "missing.log")
    assert not log_shows_port_clash(None)


async def test_a_clash_above_the_log_tail_is_retried_with_new_ports(tmp_path: Path) -> None:
    engine = FakeVllm([["INFO starting", ZMQ_CLASH, *TRACEBACK], None], tmp_path)
    assert await engine.start() is engine
    assert len(engine.attempts) == 2
    assert engine.port == engine.attempts[1][0]


async def test_another_failure_is_not_retried(tmp_path: Path) -> None:
    engine = FakeVllm([["RuntimeError: out of memory", *TRACEBACK], None], tmp_path)
    with pytest.raises(RealVllmError, match="exited with 1"):
        await engine.start()
    assert len(engine.attempts) == 1


async def test_three_clashes_give_up_with_the_last_error(tmp_path: Path) -> None:
    engine = FakeVllm([["INFO starting", ZMQ_CLASH, *TRACEBACK]] * 3, tmp_path)
    with pytest.raises(RealVllmError, match="exited with 1") as raised:
        await engine.start()
    assert len(engine.attempts) == 3  # retried although the message (the log's tail) does not show the clash
    assert "already in use" not in str(raised.value)


async def test_a_port_taken_before_the_spawn_is_caught_without_spawning(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert taken_ports([port]) == [port]
        engine = FakeVllm([None], tmp_path, port=port)  # a fixed port someone else holds
        with pytest.raises(RealVllmError, match=f"{port} already in use before the start"):
            await engine.start()
        assert engine.attempts == []
    assert taken_ports([port]) == []


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3
    assert taken_ports(ports) == []
