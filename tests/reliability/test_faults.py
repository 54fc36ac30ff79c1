"""Faults over real sockets: an engine killed mid-stream, an engine that hangs, an engine restart (KV events), a gap
in the event stream, every endpoint down and back."""

from __future__ import annotations

import contextlib
from pathlib import Path

import aiohttp
import orjson
import zmq
import zmq.asyncio
from rel_support import StubEngine, outcome_count, router_over, spawn_sim, until

from kserve_llmd.router.app import Router
from kserve_llmd.router.config import ScrapeConfig, TimeoutsConfig
from kserve_llmd.router.endpoints import endpoint_id
from kserve_llmd.simulator.cluster import SimCluster
from kserve_llmd.simulator.config import SimConfig
from kserve_llmd.wire.kv_events import encode_seq

PROMPT_A = " ".join(f"alpha{i}" for i in range(200))  # 12 full blocks of 16 (builtin tokenizer)
PROMPT_B = " ".join(f"beta{i}" for i in range(100))  # 6 full blocks


def is_openai_error(body: object) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and {"message", "type"} <= error.keys()


async def test_engine_killed_mid_stream(tmp_path: Path) -> None:
    # slow tokens, so the stream is surely in flight when its engine is killed
    slow = ("--time-to-first-token", "1", "--inter-token-latency", "50")
    first, second = await spawn_sim(tmp_path, *slow), await spawn_sim(tmp_path, *slow)
    sims = {endpoint_id(s.url): s for s in (first, second)}
    try:
        # scrape rarely: taking the dead engine out must not wait for the scraper (passive health)
        async with router_over([first.url, second.url], scrape=ScrapeConfig(interval=30)) as router, \
                aiohttp.ClientSession() as client:
            body = {"model": "sim-model", "prompt": "hello there", "max_tokens": 200, "stream": True}
            async with client.post(router.url + "/v1/completions", json=body) as resp:
                assert resp.status == 200
                victim = resp.headers["X-Routed-To"]
                assert await resp.content.readuntil(b"\n\n")  # the first token arrived
                sims[victim].kill()
                rest = await resp.content.read()  # the stream ENDS (no hang) ...
            last = rest.strip().split(b"\n\n")[-1]
            assert last.startswith(b"data: ")
            assert is_openai_error(orjson.loads(last.removeprefix(b"data: ")))  # ... with an in-band error
            assert outcome_count(router, "upstream_died") == 1
            assert router.endpoints.get(victim) is not None
            assert not router.endpoints.get(victim).healthy  # type: ignore[union-attr]
            for _ in range(4):  # every new request avoids the dead engine, with no retry needed
                async with client.post(router.url + "/v1/completions", json={**body, "max_tokens": 2}) as resp:
                    assert resp.status == 200
                    assert resp.headers["X-Routed-To"] != victim
                    await resp.read()
            assert router.metrics.registry.get_sample_value("kserve_llmd_router_retries_total") == 0
    finally:
        for sim in (first, second):
            await sim.aclose()


async def test_hanging_engine_times_out_and_is_counted() -> None:
    async with StubEngine(mode="hang") as hang, StubEngine(mode="hang_mid_stream") as stall:
        async with router_over([hang.url], timeouts=TimeoutsConfig(first_byte=0.2)) as router, \
                aiohttp.ClientSession() as client:
            async with client.post(router.url + "/v1/completions", json={"model": "m", "prompt": "x"}) as resp:
                assert resp.status == 504
                assert is_openai_error(await resp.json())
            assert outcome_count(router, "timeout") == 1
        async with router_over([stall.url], timeouts=TimeoutsConfig(first_byte=0.2)) as router, \
                aiohttp.ClientSession() as client:
            body = {"model": "m", "prompt": "x", "stream": True}
            async with client.post(router.url + "/v1/completions", json=body) as resp:
                assert resp.status == 200
                chunks = (await resp.read()).strip().split(b"\n\n")
            assert is_openai_error(orjson.loads(chunks[-1].removeprefix(b"data: ")))
            assert outcome_count(router, "timeout") == 1
            # a stall is not a death: the endpoint stays in (its /health still answers)
            assert all(ep.healthy for ep in router.endpoints)


async def test_engine_restart_drops_its_index_entries_and_takes_new_events() -> None:
    # The restarted engine comes back on the same addresses; the router's SUB reconnects by itself. The restart is
    # seen from the reconnect (socket monitor), BEFORE the new engine publishes anything: a sequence that goes back
    # is not needed (batches published during the reconnect are lost, and the first one seen may be numbered higher
    # than the dead engine's last). No replay endpoint here: a join cannot be sure its subscription reached the
    # engine, so each engine's first batches may be missed (see router/events/__init__.py); the test keeps sending
    # until one lands.
    config = SimConfig(engines=1, time_scale=0, model="sim")
    async with SimCluster(config) as sim:
        engine = sim.engines[0]
        port = int(engine.url.rsplit(":", 1)[1])
        zmq_port = int(engine.kv_events.rsplit(":", 1)[1])
        async with router_over([f"{engine.url}={engine.kv_events}"], preset="precise-prefix") as router, \
                aiohttp.ClientSession() as client:
            ingester = router.ingester
            assert ingester is not None
            ep = router_id(router)
            sent = 0  # requests the current engine served: one batch each, numbered from 0 by each engine

            async def complete(prompt: str) -> None:
                nonlocal sent
                async with client.post(router.url + "/v1/completions",
                                       json={"model": "sim", "prompt": f"{sent} {prompt}", "max_tokens": 1}) as resp:
                    assert resp.status == 200
                    await resp.read()
                sent += 1

            async def subscribed(engine: str) -> None:
                """Distinct 6-block prompts until the engine's batches reach the router, then until all have."""

                async def seen() -> bool:
                    await complete(PROMPT_B)
                    return ingester.last_seq(ep) is not None

                await until(seen, f"a batch of the {engine} engine")
                await until(lambda: ingester.last_seq(ep) == sent - 1, f"the {engine} engine's batches")

            await subscribed("first")
            for _ in range(3):  # three batches of 12 blocks
                await complete(PROMPT_A)
                await until(lambda: ingester.last_seq(ep) == sent - 1, f"batch {sent - 1} of the first engine")
            assert len(ingester.index) >= 36
            assert (ingester.stats.restarts, ingester.stats.resets, ingester.stats.gaps) == (0, 0, 0)
            before = ingester.stats.batches
            await sim.aclose()  # the engine goes away ...
            restarted = config.model_copy(update={"port": port, "zmq_endpoint": f"tcp://127.0.0.1:{zmq_port}"})
            async with SimCluster(restarted):  # ... and comes back on the same addresses, its sequence from 0
                sent = 0
                await until(lambda: ingester.stats.restarts >= 1,
                            "the reset on the SUB's reconnect to the restarted engine (no batch published yet)")
                assert (ingester.stats.restarts, ingester.stats.resets) == (1, 1)
                assert ingester.last_seq(ep) is None
                assert len(ingester.index) == 0  # the dead engine's entries are gone
                await until(lambda: all(e.healthy for e in router.endpoints), "the restarted engine's health")
                await subscribed("restarted")
                applied = ingester.stats.batches - before  # the new engine's batches (all after the reset)
                assert 1 <= applied <= sent
                assert len(ingester.index) == 6 * applied  # only the new engine's blocks
                assert (ingester.stats.restarts, ingester.stats.resets, ingester.stats.gaps) == (1, 1, 0)


def router_id(router: Router) -> str:
    (ep,) = list(router.endpoints)
    return ep.id


async def test_event_gap_without_replay_resets_the_endpoint() -> None:
    from kserve_llmd.wire.kv_events import BlockStored, EventBatch, encode_batch

    ctx = zmq.asyncio.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    try:
        async with StubEngine() as stub, \
                router_over([f"{stub.url}=tcp://127.0.0.1:{port}"], preset="precise-prefix") as router:
            ingester = router.ingester
            assert ingester is not None

            def batch(first_hash: int) -> bytes:
                tokens = list(range(first_hash * 16, first_hash * 16 + 16))
                event = BlockStored(block_hashes=[first_hash], parent_block_hash=None, token_ids=tokens,
                                    block_size=16)
                return encode_batch(EventBatch(ts=0.0, events=[event]))

            async def send(seq: int) -> None:
                await pub.send_multipart([b"kv@x@m", encode_seq(seq), batch(seq + 1)])

            async def joined() -> bool:  # ZMQ slow joiner: resend seq 0 until the router applied it
                await send(0)
                return ingester.stats.batches >= 1

            await until(joined)
            await send(1)
            await until(lambda: len(ingester.index) >= 2)
            await send(5)  # 2..4 lost, and this engine has no replay socket
            await until(lambda: ingester.stats.gaps >= 1)
            await until(lambda: len(ingester.index) == 1)  # reset, then only batch 5 applied
            assert ingester.stats.resets >= 1
    finally:
        pub.close()
        ctx.term()


async def test_all_endpoints_down_gives_503_then_recovers() -> None:
    config = SimConfig(engines=2, time_scale=0, model="sim")
    async with SimCluster(config) as sim:
        urls = [e.url for e in sim.engines]
        port = int(urls[0].rsplit(":", 1)[1])
        async with router_over(urls) as router, aiohttp.ClientSession() as client:
            body = {"model": "sim", "prompt": "hi", "max_tokens": 1}
            await sim.aclose()

            async def refused() -> bool:
                async with client.post(router.url + "/v1/completions", json=body) as resp:
                    payload = await resp.json()
                    assert is_openai_error(payload)
                    return resp.status == 503

            await until(refused)  # every endpoint marked down: a clean OpenAI-shaped 503
            async with client.get(router.url + "/health") as resp:
                assert resp.status == 503
            # only the first engine comes back on its old port: a cluster started at ``port`` would bind the second
            # engine on port + 1, which the OS may have handed to some connection meanwhile (EADDRINUSE)
            async with SimCluster(config.model_copy(update={"port": port, "engines": 1})):

                async def served() -> bool:
                    async with client.post(router.url + "/v1/completions", json=body) as resp:
                        await resp.read()
                        return resp.status == 200

                await until(served)
                async with client.get(router.url + "/health") as resp:
                    assert resp.status == 200



async def test_connection_flood_under_a_tight_open_file_limit_is_turned_away_and_the_router_recovers(
        tmp_path: Path) -> None:
    """A router PROCESS with 320 open files and ``limits.max_connections=20`` (it needs 3 x 20 + 256 = 316) takes a
    flood of 300 silent connections: it stays up; the first 20 are served, the next 20 answered 503, the rest reset
    (its descriptors stay bounded); with the served ones still held, a new client is told 503; once the flood is
    gone it serves normally."""
    import asyncio
    import resource
    import sys

    def tight_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (320, 320))

    async def answer(reader: asyncio.StreamReader) -> str:
        try:
            head = await asyncio.wait_for(reader.read(64), 1.0)
        except TimeoutError:
            return "served"  # held open, nothing said: a served connection waiting for its request
        except ConnectionError:
            return "reset"
        return "503" if head.startswith(b"HTTP/1.1 503 ") else "reset" if not head else repr(head)

    ready = tmp_path / "ready.json"
    async with StubEngine() as engine:
        proc = await asyncio.create_subprocess_exec(  # its open-file limit is set before it starts
            sys.executable, "-m", "kserve_llmd", "router", "--port", "0", "--endpoint", engine.url,
            "--preset", "round-robin", "--set", "limits.max_connections=20", "--ready-file", str(ready),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, preexec_fn=tight_limit)
        flood: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            await until(ready.exists, "the router to listen")
            url = orjson.loads(ready.read_bytes())["url"]
            host, port = url.removeprefix("http://").split(":")
            for _ in range(300):
                flood.append(await asyncio.open_connection(host, int(port)))
            answers = await asyncio.gather(*(answer(reader) for reader, _ in flood))
            assert answers == ["served"] * 20 + ["503"] * 20 + ["reset"] * 260
            for (_, writer), said in zip(flood, answers, strict=True):
                if said != "served":
                    writer.close()
            async with aiohttp.ClientSession() as client:
                async with client.get(url + "/health") as resp:  # the 20 served ones still held: told so
                    assert resp.status == 503
                    assert is_openai_error(await resp.json())
                for _, writer in flood:
                    writer.close()
                flood.clear()

                async def served() -> bool:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with client.post(url + "/v1/completions", json={"model": "m", "prompt": "hi"}) as r:
                            return r.status == 200
                    return False

                await until(served, "a completion once the flood is gone")
                async with client.get(url + "/metrics") as resp:
                    text = await resp.text()
            assert proc.returncode is None, "the router died under the flood"
            refused = {answer: float(line.rsplit(" ", 1)[1]) for answer in ("503", "reset")
                       for line in text.splitlines()
                       if line.startswith(f'kserve_llmd_router_connections_refused_total{{answer="{answer}"}}')}
            # the flood's and the 503 above; the first tries of `served` may add to them while the closes land
            assert refused["503"] >= 21
            assert refused["reset"] >= 260
        finally:
            for _, writer in flood:
                writer.close()
            if proc.returncode is None:
                proc.terminate()
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert b"open-file limit" not in err  # 320 fits 20 connections: no warning
        assert b"Too many open files" not in err
