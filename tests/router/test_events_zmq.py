"""KV-event ingestion over real ZMQ sockets: a PUB and a replay ROUTER written here with pyzmq + msgpack
(vLLM's frame layouts), independent of the simulator. No fixed ports, no timed assertions (only timeouts)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import msgpack
import pytest
import zmq
import zmq.asyncio

from kserve_llmd.router.events import KVEventIngester
from kserve_llmd.router.hashing import block_keys, seed_for
from kserve_llmd.router.interfaces import Endpoint
from kserve_llmd.router.kvindex import LRUKVIndex

BS = 4
TOKENS = list(range(500, 532))  # 8 blocks
END = b"\xff" * 8


def keys(tokens: list[int] = TOKENS) -> list[int]:
    return block_keys(tokens, BS, seed_for("m"))


def stored_map(hashes: list[Any], parent: Any, tokens: list[int]) -> dict[str, Any]:
    return {"type": "BlockStored", "block_hashes": hashes, "parent_block_hash": parent, "token_ids": tokens,
            "block_size": BS, "medium": "GPU"}


def stored_positional(hashes: list[Any], parent: Any, tokens: list[int]) -> list[Any]:
    return ["BlockStored", hashes, parent, tokens, BS, None, "GPU"]


class Publisher:
    """An engine's KV-event PUB socket (+ its replay buffer), bound to an ephemeral loopback port."""

    def __init__(self, ctx: Ctx, topic: bytes = b"kv@10.0.0.1:8000@m", kind: int = zmq.PUB) -> None:
        self.sock = ctx.socket(kind)  # zmq.XPUB also hands the subscriptions it receives to the test
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.url: str = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.topic = topic
        self.seq = 0
        self.buffer: list[tuple[int, bytes]] = []

    async def send(self, events: list[Any], *, deliver: bool = True, seq: int | None = None) -> int:
        """Publish one batch; ``deliver=False`` keeps it only in the replay buffer (a lost message)."""
        seq = self.seq if seq is None else seq
        self.seq = seq + 1
        payload = msgpack.packb([1.0, events, 0], use_bin_type=True)
        self.buffer.append((seq, payload))
        if deliver:
            await self.sock.send_multipart([self.topic, seq.to_bytes(8, "big"), payload])
        return seq

    async def send_raw(self, frames: list[bytes]) -> None:
        await self.sock.send_multipart(frames)


async def serve_replay(router: zmq.asyncio.Socket, pub: Publisher, style: Literal["0.33", "0.24"]) -> None:
    """vLLM's replay ROUTER: every buffered batch with seq >= start, then the end marker (frames per release)."""
    while True:
        ident, _, start = await router.recv_multipart()
        for seq, payload in list(pub.buffer):
            if seq >= int.from_bytes(start, "big"):
                head = [ident, b"", pub.topic] if style == "0.33" else [ident, b""]
                await router.send_multipart([*head, seq.to_bytes(8, "big"), payload])
        await router.send_multipart([ident, b"", b"", END, b""] if style == "0.33" else [ident, b"", END, b""])


@contextlib.asynccontextmanager
async def replaying(ctx: Ctx, pub: Publisher, style: Literal["0.33", "0.24"]) -> AsyncIterator[str]:
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind("tcp://127.0.0.1:*")
    task = asyncio.create_task(serve_replay(router, pub, style))
    try:
        yield router.getsockopt_string(zmq.LAST_ENDPOINT)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(2000):  # a 10 s timeout, never an assertion on elapsed time
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def joined(pub: Publisher, ingester: KVEventIngester, endpoint: str) -> None:
    """Beat PUB/SUB's slow-joiner: publish empty batches until one arrives, then until the last one is applied."""
    for _ in range(2000):
        await pub.send([])
        await asyncio.sleep(0.005)
        if ingester.last_seq(endpoint) is not None:
            break
    await until(lambda: ingester.last_seq(endpoint) == pub.seq - 1, "the subscription")


class Ctx:
    """The test's ZMQ context; keeps its sockets referenced so that teardown, not the GC, closes them."""

    def __init__(self) -> None:
        self.context = zmq.asyncio.Context()
        self.opened: list[zmq.asyncio.Socket] = []

    def socket(self, socket_type: int) -> zmq.asyncio.Socket:
        sock = self.context.socket(socket_type)
        self.opened.append(sock)
        return sock


@pytest.fixture
async def ctx() -> AsyncIterator[Ctx]:
    context = Ctx()
    yield context
    for sock in context.opened:
        sock.close(linger=0)
    context.context.term()


def endpoint(name: str) -> Endpoint:
    return Endpoint(id=name, url=f"http://{name}", models=frozenset({"m"}))


async def test_events_reach_the_index_in_both_encodings_and_identity_comes_from_the_socket(
    ctx: Ctx,
) -> None:
    pub_a, pub_b = Publisher(ctx), Publisher(ctx, topic=b"")  # a: llm-d topic; b: vllm-router's empty topic
    index = LRUKVIndex(1000)
    async with KVEventIngester(index) as ingester:
        ingester.add_endpoint(endpoint("a"), pub_a.url)
        ingester.add_endpoint(endpoint("b"), pub_b.url)
        await joined(pub_a, ingester, "a")
        await joined(pub_b, ingester, "b")
        await pub_a.send([stored_map([1, 2, 3], None, TOKENS[:12])])
        # positional encoding, raw-bytes hashes (last 8 bytes big-endian), chained over two batches
        h = [bytes(24) + i.to_bytes(8, "big") for i in (41, 42, 43)]
        await pub_b.send([stored_positional(h[:2], None, TOKENS[:8])])
        await pub_b.send([stored_positional(h[2:], h[1], TOKENS[8:12]), ["BlockRemoved", [h[0]], "GPU"]])
        await until(lambda: ingester.stats.blocks_removed == 1, "events applied")
        assert index.match(keys(), ["a", "b"]) == {"a": 3, "b": 0}
        assert index.match(keys()[1:3], ["b"]) == {"b": 2}  # blocks 1-2 kept (block 2 chained across batches)
        assert ingester.stats.blocks_stored == 6
        assert ingester.stats.gaps == 0


async def test_gap_without_replay_resets_that_endpoint_only(ctx: Ctx) -> None:
    pub, other = Publisher(ctx), Publisher(ctx)
    index = LRUKVIndex(1000)
    async with KVEventIngester(index) as ingester:
        ingester.add_endpoint(endpoint("a"), pub.url)
        ingester.add_endpoint(endpoint("o"), other.url)
        await joined(pub, ingester, "a")
        await joined(other, ingester, "o")
        await other.send([stored_map([9, 10], None, TOKENS[:8])])
        await pub.send([stored_map([1, 2], None, TOKENS[:8])])
        await pub.send([stored_map([5], None, [1, 2, 3, 4])], deliver=False)  # lost
        seq = await pub.send([stored_map([3], None, TOKENS[12:16])])
        await until(lambda: ingester.last_seq("a") == seq and ingester.stats.blocks_stored >= 3, "the gap")
        assert ingester.stats.gaps == 1
        assert ingester.stats.resets == 1
        assert index.match(keys(), ["a", "o"]) == {"a": 0, "o": 2}


@pytest.mark.parametrize("style", ["0.33", "0.24"])
async def test_gap_is_filled_by_replay_in_order(ctx: Ctx, style: Literal["0.33", "0.24"]) -> None:
    pub = Publisher(ctx)
    index = LRUKVIndex(1000)
    async with replaying(ctx, pub, style) as replay_url, KVEventIngester(index, replay_on_join=False) as ingester:
        ingester.add_endpoint(endpoint("a"), pub.url, replay_url)
        await joined(pub, ingester, "a")
        await pub.send([stored_map([1, 2], None, TOKENS[:8])])
        await pub.send([stored_map([3, 4], 2, TOKENS[8:16])], deliver=False)  # lost live, still buffered
        await pub.send([stored_map([5], 4, TOKENS[16:20])], deliver=False)
        last = await pub.send([stored_map([6], 5, TOKENS[20:24])])  # chains off the lost batches
        await until(lambda: ingester.last_seq("a") == last, "the replay")
        assert (ingester.stats.gaps, ingester.stats.replays, ingester.stats.resets) == (1, 1, 0)
        assert index.match(keys(), ["a"]) == {"a": 6}


async def test_unanswered_replay_times_out_and_resets(ctx: Ctx) -> None:
    pub = Publisher(ctx)
    silent = ctx.socket(zmq.ROUTER)  # bound, never answers
    silent.setsockopt(zmq.LINGER, 0)
    silent.bind("tcp://127.0.0.1:*")
    index = LRUKVIndex(1000)
    try:
        async with KVEventIngester(index, replay_timeout=0.2, replay_on_join=False) as ingester:
            ingester.add_endpoint(endpoint("a"), pub.url, silent.getsockopt_string(zmq.LAST_ENDPOINT))
            await joined(pub, ingester, "a")
            await pub.send([stored_map([1, 2], None, TOKENS[:8])])
            await pub.send([], deliver=False)
            last = await pub.send([stored_map([7], None, TOKENS[:4])])
            await until(lambda: ingester.last_seq("a") == last, "the failed replay")
            assert (ingester.stats.replay_failures, ingester.stats.resets) == (1, 1)
            assert index.match(keys(), ["a"]) == {"a": 1}  # only what came after the reset
    finally:
        silent.close(linger=0)


async def test_sequence_going_backwards_means_engine_restart(ctx: Ctx) -> None:
    pub = Publisher(ctx)
    index = LRUKVIndex(1000)
    async with KVEventIngester(index) as ingester:
        ingester.add_endpoint(endpoint("a"), pub.url)
        await joined(pub, ingester, "a")
        stored = await pub.send([stored_map([1, 2, 3], None, TOKENS[:12])])
        # wait for this batch first: when the join caught seq 0 already, last_seq == 0 would hold too early
        await until(lambda: ingester.last_seq("a") == stored, "the batch before the restart")
        await pub.send([stored_map([1], None, TOKENS[:4])], seq=0)  # restarted engine counts from 0 again
        await until(lambda: ingester.last_seq("a") == 0, "the restart")
        assert (ingester.stats.restarts, ingester.stats.resets) == (1, 1)
        assert index.match(keys(), ["a"]) == {"a": 1}


async def test_hostile_messages_are_dropped_counted_and_the_loop_survives(ctx: Ctx) -> None:
    pub = Publisher(ctx)
    index = LRUKVIndex(1000)
    async with KVEventIngester(index) as ingester:
        ingester.add_endpoint(endpoint("a"), pub.url)
        await joined(pub, ingester, "a")
        seq = pub.seq
        await pub.send_raw([b"topic", b"only two"])
        await pub.send_raw([b"t", b"\x00\x01", b"bad seq frame"])
        await pub.send_raw([b"t", END, b""])
        await pub.send_raw([b"t", seq.to_bytes(8, "big"), b"\xc1 not msgpack"])
        bad = msgpack.packb([1.0, [stored_map([1], None, [1, 2])]])  # token count does not match blocks
        await pub.send_raw([b"t", (seq + 1).to_bytes(8, "big"), bad])
        pub.seq = seq + 2
        last = await pub.send([stored_map([1], None, TOKENS[:4])])
        await until(lambda: ingester.last_seq("a") == last, "the valid batch after the bad ones")
        assert (ingester.stats.malformed_frames, ingester.stats.decode_errors) == (3, 2)
        assert ingester.stats.gaps == 0
        assert index.match(keys(), ["a"]) == {"a": 1}


async def test_late_joiner_replays_from_zero_and_remove_endpoint_drops_entries(ctx: Ctx) -> None:
    pub = Publisher(ctx)
    await pub.send([stored_map([1, 2], None, TOKENS[:8])], deliver=False)  # before the router existed
    index = LRUKVIndex(1000)
    async with replaying(ctx, pub, "0.33") as replay_url, KVEventIngester(index) as ingester:
        ingester.add_endpoint(endpoint("a"), pub.url, replay_url)
        await joined(pub, ingester, "a")
        last = await pub.send([stored_map([3], 2, TOKENS[8:12])])
        await until(lambda: ingester.last_seq("a") == last, "the batch")
        assert index.match(keys(), ["a"]) == {"a": 3}
        await ingester.remove_endpoint("a")
        assert len(index) == 0
        assert ingester.last_seq("a") is None


def test_add_endpoint_needs_a_url_and_a_model() -> None:
    from kserve_llmd.errors import ConfigError

    ingester = KVEventIngester(LRUKVIndex(10))
    with pytest.raises(ConfigError, match="kv_events"):
        ingester.add_endpoint(endpoint("a"))
    with pytest.raises(ConfigError, match="model="):
        ingester.add_endpoint(Endpoint(id="x", url="http://x", models=frozenset({"m", "n"})), "tcp://127.0.0.1:1")


async def test_join_replays_history_without_waiting_for_a_live_message(ctx: Ctx) -> None:
    # The slow joiner: batches published before the SUB's subscription took effect never arrive live, and when
    # nothing follows them no gap ever shows. The join replays them as soon as the handshake is done.
    pub = Publisher(ctx)
    await pub.send([stored_map([1, 2], None, TOKENS[:8])], deliver=False)
    await pub.send([stored_map([3], 2, TOKENS[8:12])], deliver=False)
    index = LRUKVIndex(1000)
    async with replaying(ctx, pub, "0.33") as replay_url, KVEventIngester(index) as ingester:
        ingester.add_endpoint(endpoint("a"), pub.url, replay_url)
        assert await ingester.wait_joined(10)
        assert ingester.last_seq("a") == 1
        assert index.match(keys(), ["a"]) == {"a": 3}
        assert (ingester.stats.replays, ingester.stats.replay_failures, ingester.stats.resets) == (1, 0, 0)


async def test_start_waits_for_the_join(ctx: Ctx) -> None:
    pub = Publisher(ctx)
    await pub.send([stored_map([1, 2], None, TOKENS[:8])], deliver=False)
    index = LRUKVIndex(1000)
    async with replaying(ctx, pub, "0.24") as replay_url:
        ingester = KVEventIngester(index, join_timeout=30)  # a bound, not a measurement: the join takes ms
        ingester.add_endpoint(endpoint("a"), pub.url, replay_url)
        async with ingester:  # start() returns once joined
            assert index.match(keys(), ["a"]) == {"a": 2}


async def test_live_copies_of_join_replayed_batches_are_skipped_and_a_restart_still_shows(ctx: Ctx) -> None:
    # A batch published after the subscription took effect but before the replay was answered arrives twice:
    # in the replay and then live. The live copy is not a restart (seq <= last) and is not applied twice.
    pub = Publisher(ctx, kind=zmq.XPUB)
    await pub.send([stored_map([1, 2], None, TOKENS[:8])], deliver=False)
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind("tcp://127.0.0.1:*")

    async def serve() -> None:
        ident, _, start = await router.recv_multipart()
        await pub.sock.recv()  # the SUB's subscription has reached the publisher: what it sends now is delivered
        await pub.send([stored_map([3], 2, TOKENS[8:12])])  # live AND (below) replayed
        for seq, payload in pub.buffer:
            if seq >= int.from_bytes(start, "big"):
                await router.send_multipart([ident, b"", pub.topic, seq.to_bytes(8, "big"), payload])
        await router.send_multipart([ident, b"", b"", END, b""])

    server = asyncio.create_task(serve())
    index = LRUKVIndex(1000)
    try:
        async with KVEventIngester(index) as ingester:
            ingester.add_endpoint(endpoint("a"), pub.url, router.getsockopt_string(zmq.LAST_ENDPOINT))
            assert await ingester.wait_joined(10)
            await server
            last = await pub.send([stored_map([4], 3, TOKENS[12:16])])
            await until(lambda: ingester.last_seq("a") == last, "the batch after the duplicate")
            assert (ingester.stats.batches, ingester.stats.blocks_stored) == (3, 4)
            assert (ingester.stats.restarts, ingester.stats.resets, ingester.stats.gaps) == (0, 0, 0)
            assert index.match(keys(), ["a"]) == {"a": 4}
            await pub.send([stored_map([1], None, TOKENS[:4])], seq=0)  # the engine restarted: counts from 0
            await until(lambda: ingester.last_seq("a") == 0, "the restart")
            assert (ingester.stats.restarts, ingester.stats.resets) == (1, 1)
            assert index.match(keys(), ["a"]) == {"a": 1}
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


async def test_unreachable_publisher_does_not_block_start_or_close(ctx: Ctx) -> None:
    gone = ctx.socket(zmq.PUB)  # a port that was free a moment ago: nobody listens there
    gone.bind("tcp://127.0.0.1:*")
    url = gone.getsockopt_string(zmq.LAST_ENDPOINT)
    gone.close(linger=0)
    ingester = KVEventIngester(LRUKVIndex(10), join_timeout=0.05)
    ingester.add_endpoint(endpoint("a"), url, url)
    async with ingester:  # start() gives up waiting after join_timeout; close() must not hang on the monitor
        assert not await ingester.wait_joined(0.05)
        assert ingester.last_seq("a") is None
    assert ingester.stats.replay_failures == 0  # no replay is tried before the handshake


async def rebind(ctx: Ctx, pub: Publisher) -> None:
    """The engine dies and a new one binds the SAME address (its PUB, not the router's SUB, goes away)."""
    pub.sock.close(linger=0)
    for _ in range(2000):  # the old listener is closed by ZMQ's I/O thread: retry while the port is still taken
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.bind(pub.url)
        except zmq.ZMQError:
            sock.close(linger=0)
            await asyncio.sleep(0.005)
            continue
        pub.sock = sock
        return
    raise AssertionError(f"could not bind {pub.url} again")


@pytest.mark.parametrize("skip", [0, 2])
async def test_publisher_rebound_on_the_same_port_is_a_new_incarnation(ctx: Ctx, skip: int) -> None:
    # The new engine's sequence continues upward (e.g. 0..2, then 3.. with skip=0: no gap at all, or 5.. with
    # skip=2: what looks like a gap): the sequence alone cannot show the restart; the SUB's reconnect (socket
    # monitor: a disconnect, then a new handshake) does.
    pub = Publisher(ctx)
    index = LRUKVIndex(1000)
    async with KVEventIngester(index) as ingester:
        ingester.add_endpoint(endpoint("a"), pub.url)
        await joined(pub, ingester, "a")  # empty batches from 0
        first = await pub.send([stored_map([1, 2], None, TOKENS[:8])])
        await pub.send([stored_map([3], 2, TOKENS[8:12])])
        await until(lambda: ingester.last_seq("a") == first + 1, "the dead incarnation's batches")
        assert index.match(keys(), ["a"]) == {"a": 3}
        await rebind(ctx, pub)
        await until(lambda: ingester.stats.restarts == 1, "the reset on reconnect (no batch published yet)")
        assert ingester.stats.resets == 1
        assert ingester.last_seq("a") is None
        assert len(index) == 0  # the dead incarnation's entries are gone at once
        pub.seq = first + 2 + skip
        await joined(pub, ingester, "a")  # slow joiner again: whatever the new engine's first seen seq is
        last = await pub.send([stored_map([7], None, TOKENS[:4])])
        await until(lambda: ingester.last_seq("a") == last, "the new incarnation's batch")
        assert (ingester.stats.restarts, ingester.stats.resets, ingester.stats.gaps) == (1, 1, 0)
        assert index.match(keys(), ["a"]) == {"a": 1}


async def test_reconnect_to_the_same_engine_costs_a_reset_and_a_replay(ctx: Ctx) -> None:
    # A transient TCP reconnect to a still-running engine looks like a new incarnation: reset, then the join
    # replay from 0 restores everything the engine still buffers.
    pub = Publisher(ctx)
    async with replaying(ctx, pub, "0.33") as replay_url, KVEventIngester(LRUKVIndex(1000)) as ingester:
        ingester.add_endpoint(endpoint("a"), pub.url, replay_url)
        assert await ingester.wait_joined(10)
        await joined(pub, ingester, "a")
        last = await pub.send([stored_map([1, 2], None, TOKENS[:8])])
        await until(lambda: ingester.last_seq("a") == last, "the batch")
        replays = ingester.stats.replays
        await rebind(ctx, pub)  # same buffer, same replay socket: the same engine, reached over a new connection
        await until(lambda: ingester.stats.replays == replays + 1, "the replay after the reconnect")
        assert (ingester.stats.restarts, ingester.stats.resets, ingester.stats.gaps) == (1, 1, 0)
        assert ingester.last_seq("a") == last
        assert ingester.index.match(keys(), ["a"]) == {"a": 2}


async def test_explicit_replay_address_from_an_endpoint_spec_replays_on_join_and_on_reconnect(ctx: Ctx) -> None:
    # ``--endpoint URL=PUB,REPLAY``: the spec's replay address reaches the ingester through the Endpoint that
    # static discovery builds (no replay_url argument, no /kv_event_sources), so a late subscriber recovers the
    # blocks stored before it joined, and again after a reconnect.
    from kserve_llmd.router.config import EndpointSpec
    from kserve_llmd.router.discovery import StaticDiscovery

    pub = Publisher(ctx)
    await pub.send([stored_map([1, 2], None, TOKENS[:8])], deliver=False)  # before the router existed
    await pub.send([stored_map([3], 2, TOKENS[8:12])], deliver=False)
    async with replaying(ctx, pub, "0.33") as replay_url, KVEventIngester(LRUKVIndex(1000)) as ingester:
        (ep,) = StaticDiscovery([EndpointSpec.parse(f"http://a:1={pub.url},{replay_url}")]).snapshot()
        assert (ep.kv_events, ep.kv_events_replay) == (pub.url, replay_url)
        ep.models = frozenset({"m"})
        ingester.add_endpoint(ep)
        assert await ingester.wait_joined(10)
        assert ingester.index.match(keys(), [ep.id]) == {ep.id: 3}
        assert (ingester.stats.replays, ingester.stats.replay_failures, ingester.stats.resets) == (1, 0, 0)
        await rebind(ctx, pub)  # a reconnect: reset, then the replay from 0 restores the buffered blocks
        await until(lambda: ingester.stats.replays == 2, "the replay after the reconnect")
        assert ingester.stats.resets == 1
        assert ingester.index.match(keys(), [ep.id]) == {ep.id: 3}


async def test_replay_url_argument_wins_over_the_endpoint_s_own(ctx: Ctx) -> None:
    # The router passes what /kv_event_sources reported; an Endpoint's explicit address is only the fallback.
    pub = Publisher(ctx)
    await pub.send([stored_map([1, 2], None, TOKENS[:8])], deliver=False)
    gone = ctx.socket(zmq.ROUTER)  # bound then closed: nobody answers there
    gone.bind("tcp://127.0.0.1:*")
    dead = gone.getsockopt_string(zmq.LAST_ENDPOINT)
    gone.close(linger=0)
    async with replaying(ctx, pub, "0.24") as replay_url, KVEventIngester(LRUKVIndex(1000)) as ingester:
        ep = Endpoint(id="a", url="http://a", models=frozenset({"m"}), kv_events=pub.url, kv_events_replay=dead)
        ingester.add_endpoint(ep, None, replay_url)
        assert await ingester.wait_joined(10)
        assert ingester.index.match(keys(), ["a"]) == {"a": 2}
        assert ingester.stats.replay_failures == 0
