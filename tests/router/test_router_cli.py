"""`kserve-llmd router`: flags to RouterConfig; as a separate process: ready file, a proxied request, clean SIGTERM;
bad config exits 2."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
import pytest
from engine_double import EngineDouble
from pydantic import ValidationError

from kserve_llmd.cli import build_parser
from kserve_llmd.commands import router as router_command
from kserve_llmd.errors import ConfigError
from kserve_llmd.router.config import EndpointSpec, LimitsConfig, RouterConfig
from kserve_llmd.router.pd import PDConfig


def _config(*argv: str) -> RouterConfig:
    config = router_command.build_config(build_parser().parse_args(["router", *argv]))
    assert isinstance(config, RouterConfig)
    return config


@asynccontextmanager
async def router_process(tmp_path: Path, *argv: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``kserve-llmd router --port 0 ... argv`` as a child process, once listening: (process, url). Killed if it is
    still running when the block ends."""
    ready = tmp_path / "ready.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kserve_llmd", "router", "--port", "0", "--ready-file", str(ready), *argv,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        while not ready.exists():
            assert proc.returncode is None, "router exited early"
            await asyncio.sleep(0.05)
        yield proc, orjson.loads(ready.read_bytes())["url"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_router_command_serves_and_stops(tmp_path: Path) -> None:
    async with EngineDouble() as eng:
        async with router_process(tmp_path, "--endpoint", eng.url, "--preset", "least-load") as (proc, url):
            async with aiohttp.ClientSession() as client, \
                    client.post(url + "/v1/completions", json={"model": "m", "prompt": "hi"}) as resp:
                assert resp.status == 200
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
        assert len(eng.seen) == 1


async def test_sigterm_drains_health_503_while_requests_are_still_served_then_exits(tmp_path: Path) -> None:
    async with EngineDouble() as eng, router_process(tmp_path, "--endpoint", eng.url, "--preset", "round-robin",
                                                     "--set", "timeouts.drain_delay=1.5") as (proc, url):
        async with aiohttp.ClientSession() as client:
            async with client.get(url + "/health") as resp:
                assert resp.status == 200
            proc.send_signal(signal.SIGTERM)
            while True:  # the signal lands: /health flips, the listener stays open
                async with client.get(url + "/health") as resp:
                    if resp.status == 503:
                        assert "shutting down" in (await resp.json())["error"]["message"]
                        break
                await asyncio.sleep(0.02)
            async with client.post(url + "/v1/completions", json={"model": "m", "prompt": "hi"}) as resp:
                assert resp.status == 200  # still served while draining
            assert proc.returncode is None
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0


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


def test_pd_flags_reach_the_config() -> None:
    assert _config().pd == PDConfig()  # not given: PDConfig's own defaults
    pd = _config("--no-pd-fallback", "--pd-prefill-timeout", "7.5", "--pd-release-path", "/_sim/kv_pull").pd
    assert pd == PDConfig(fallback_to_aggregated=False, prefill_timeout=7.5, release_path="/_sim/kv_pull")
    assert _config("--pd-fallback").pd.fallback_to_aggregated is True
    with pytest.raises(ConfigError, match=r"pd\.prefill_timeout: Input should be greater than 0"):
        _config("--pd-prefill-timeout", "0")


def test_set_reaches_any_field_of_the_settable_sections_and_wins_over_the_flags() -> None:
    config = _config("--endpoint", "http://e:8000", "--first-byte-timeout", "30", "--scrape-interval", "0.5",
                     "--set", "limits.max_connections=8192", "--set", "timeouts.total=7200",
                     "--set", "timeouts.first_byte=45", "--set", "pd.fallback_to_aggregated=false",
                     "--set", " scrape.stale_after = 2.5")
    assert (config.limits.max_connections, config.limits.max_body_bytes) == (8192, LimitsConfig().max_body_bytes)
    assert (config.timeouts.total, config.timeouts.first_byte) == (7200.0, 45.0)  # --set won over the flag
    assert (config.scrape.interval, config.scrape.stale_after) == (0.5, 2.5)  # the flag, where --set is silent
    assert config.pd.fallback_to_aggregated is False


@pytest.mark.parametrize(("item", "message"), [
    ("limits.max_conections=3", "limits.max_conections: no such setting; limits has max_body_bytes, "),
    ("timeouts.total=soon", "timeouts.total: Input should be a valid number"),
    ("timeouts.client_idle=0", "timeouts.client_idle: Input should be greater than 0 (got '0')"),
    ("limitsmax_connections=3", "expected SECTION.FIELD=VALUE, SECTION one of timeouts, limits, scrape, pd"),
    ("host.name=x", "SECTION one of timeouts, limits, scrape, pd"),
    ("limits.max_connections", "expected SECTION.FIELD=VALUE"),
])
def test_set_refuses_what_it_cannot_place_naming_it(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _config("--endpoint", "http://e:8000", "--set", item)


async def test_router_command_exits_2_on_a_bad_set() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kserve_llmd", "router", "--port", "0", "--endpoint", "http://127.0.0.1:1",
        "--set", "limits.max_body=1", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"limits.max_body: no such setting" in err


def test_endpoint_specs_with_and_without_a_replay_address() -> None:
    config = _config("--endpoint", "http://e1:8000", "--endpoint", "http://e2:8000=tcp://e2:5557",
                     "--prefill", "http://p:8000=tcp://p:5557,tcp://p:5558", "--decode", "http://d:8000/=ipc:///x")
    got = [(e.url, e.kv_events, e.kv_events_replay, e.role) for e in config.all_endpoints()]
    assert got == [("http://e1:8000", None, None, "both"), ("http://e2:8000", "tcp://e2:5557", None, "both"),
                   ("http://p:8000", "tcp://p:5557", "tcp://p:5558", "prefill"),
                   ("http://d:8000", "ipc:///x", None, "decode")]


@pytest.mark.parametrize("spec", ["http://e:1=", "http://e:1=,tcp://e:2", "http://e:1=tcp://e:1,",
                                  "http://e:1=tcp://e:1,tcp://e:2,tcp://e:3"])
def test_malformed_endpoint_specs_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match="URL=PUB,REPLAY"):
        _config("--endpoint", spec)


def test_a_replay_address_needs_its_publisher() -> None:
    with pytest.raises(ValidationError, match="needs kv_events"):
        EndpointSpec(url="http://e:1", kv_events_replay="tcp://e:2")


@pytest.mark.parametrize("spec", ["http://e:1=e:5557", "http://e:1=tcp://e:1,e:5558"])
def test_endpoint_specs_need_zmq_addresses(spec: str) -> None:
    with pytest.raises(ValidationError, match="ZMQ endpoint"):
        _config("--endpoint", spec)


async def test_router_command_rejects_a_bad_endpoint_spec_with_exit_2() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kserve_llmd", "router", "--port", "0", "--endpoint", "http://127.0.0.1:1=,tcp://x:1",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"expected URL, URL=PUB or URL=PUB,REPLAY" in err


def test_router_process_raises_its_open_file_limit_to_fit_its_connections() -> None:
    """In a child process (limits are process-wide): a soft limit under what ``max_connections`` needs is raised
    (3 x 100 + 256 = 556 open files); a hard limit under it is taken as it is, with a warning naming the numbers."""
    import subprocess

    code = """if True:
        import logging, resource
        from kserve_llmd.router.process import fit_open_files
        from kserve_llmd.router.config import LimitsConfig, RouterConfig
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        config = RouterConfig(limits=LimitsConfig(max_connections=100))
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1000))
        print(fit_open_files(config), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 300))
        print(fit_open_files(config), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["556", "556", "300", "300"]
    assert "open-file limit 300 is under the 556 that limits.max_connections=100 needs" in done.stderr
