"""`kserve-llmd sim` as a subprocess: --ready-file, real requests, SIGTERM → exit 0."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from pydantic import ValidationError

from kserve_llmd.cli import build_parser
from kserve_llmd.commands.sim import build_config
from kserve_llmd.realvllm.ports import free_ports
from kserve_llmd.simulator import SimCluster, SimConfig


def test_timing_flags_are_milliseconds_over_the_profile() -> None:
    args = build_parser().parse_args(["sim", "--profile", "llama-8b-h100", "--inter-token-latency", "20",
                                      "--time-factor-under-load", "3", "--failure-injection-rate", "10"])
    config = build_config(args)
    timing = config.resolved_timing()
    assert timing.inter_token_latency == 0.02
    assert timing.time_factor_under_load == 3.0
    assert timing.prefill_time_per_token == 5e-5  # untouched profile value
    assert timing.prefill_under_load  # the profile's
    assert config.failure_injection_rate == 0.1  # llm-d-inference-sim's percent form
    decode_only = build_config(build_parser().parse_args(["sim", "--profile", "llama-8b-h100",
                                                          "--no-prefill-under-load"])).resolved_timing()
    assert not decode_only.prefill_under_load
    assert decode_only.inter_token_latency == 0.007


def test_replay_endpoint_is_numbered_per_engine_like_the_publisher() -> None:
    args = build_parser().parse_args(["sim", "--engines", "2", "--zmq-endpoint", "tcp://*:5557",
                                      "--replay-endpoint", "tcp://*:5558"])
    config = build_config(args)
    assert [config.zmq_bind(i) for i in (0, 1)] == ["tcp://*:5557", "tcp://*:5558"]
    assert [config.replay_bind(i) for i in (0, 1)] == ["tcp://*:5558", "tcp://*:5559"]
    default = build_config(build_parser().parse_args(["sim", "--zmq-endpoint", "tcp://127.0.0.1:5557"]))
    assert default.replay_bind(0) == "tcp://127.0.0.1:*"  # without the flag: ephemeral, as before
    with pytest.raises(ValidationError, match="replay_endpoint must look like tcp://HOST:PORT"):
        SimConfig(replay_endpoint="5558")


async def test_engine_binds_its_replay_socket_where_told() -> None:
    [port] = free_ports(1)  # free a moment ago: what a runtime's fixed port is to the engine
    async with SimCluster(SimConfig(time_scale=0, replay_endpoint=f"tcp://127.0.0.1:{port}")) as cluster:
        assert cluster.engines[0].replay == f"tcp://127.0.0.1:{port}"


async def _post_each(engines: list[dict[str, str]]) -> list[int]:
    async with aiohttp.ClientSession() as http:
        statuses = []
        for e in engines:
            async with http.post(e["url"] + "/v1/completions",
                                 json={"model": "m1", "prompt": "hi", "max_tokens": 2}) as resp:
                statuses.append(resp.status)
        return statuses


def test_ready_file_and_clean_shutdown(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kserve_llmd", "sim", "--port", "0", "--engines", "2", "--time-scale", "0",
         "--model", "m1", "--role", "decode", "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no ready file"
            time.sleep(0.05)
        engines = json.loads(ready.read_text())["engines"]
        assert len(engines) == 2
        for e in engines:
            assert set(e) == {"url", "kv_events", "replay", "role", "model"}
            assert e["role"] == "decode"
            assert e["model"] == "m1"
            assert e["url"].startswith("http://127.0.0.1:")
            assert e["kv_events"].startswith("tcp://127.0.0.1:")
            assert e["replay"].startswith("tcp://127.0.0.1:")
        assert asyncio.run(_post_each(engines)) == [200, 200]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
