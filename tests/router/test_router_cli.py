"""`kserve-llmd router` as a separate process: ready file, a proxied request, clean SIGTERM; bad config exits 2."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import orjson
from engine_double import EngineDouble


async def test_router_command_serves_and_stops(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    async with EngineDouble() as eng:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kserve_llmd", "router", "--port", "0", "--endpoint", eng.url,
            "--preset", "least-load", "--ready-file", str(ready),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        try:
            while not ready.exists():
                assert proc.returncode is None, "router exited early"
                await asyncio.sleep(0.05)
            url = orjson.loads(ready.read_bytes())["url"]
            async with aiohttp.ClientSession() as client, \
                    client.post(url + "/v1/completions", json={"model": "m", "prompt": "hi"}) as resp:
                assert resp.status == 200
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert len(eng.seen) == 1


async def test_router_command_rejects_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "epp.yaml"
    cfg.write_text("apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n- type: magic-scorer\n"
                   "schedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: magic-scorer\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kserve_llmd", "router", "--port", "0", "--endpoint", "http://127.0.0.1:1",
        "--config", str(cfg), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"unknown type 'magic-scorer'" in err
