"""A bare TCP relay: the floor under any proxy's added latency on this machine (for ``router_overhead.py``).

Every accepted connection gets its own connection to ``--upstream``, and bytes are pumped both ways from the read
callbacks (asyncio protocols on uvloop when installed): no HTTP parsing, no routing, no copies beyond the kernel's.
What it adds over talking to the engine directly is the cost of the extra hop itself (two more loopback sockets,
one more process to wake on another core); what the router adds beyond the relay is its own work.

    python benchmarks/tcp_relay.py --upstream http://127.0.0.1:8000 --ready-file PATH
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import cast


class _Pipe(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def serve(upstream: str, ready: Path) -> None:
    host, _, port = upstream.removeprefix("http://").rstrip("/").rpartition(":")
    loop = asyncio.get_running_loop()
    connecting: set[asyncio.Task[None]] = set()

    def accepted() -> _Pipe:
        down = _Pipe()

        async def connect() -> None:
            _, up = await loop.create_connection(_Pipe, host, int(port))
            up.peer, down.peer = down, up
            for data in down.pending:
                cast(asyncio.Transport, up.transport).write(data)
            down.pending.clear()

        task = loop.create_task(connect())
        connecting.add(task)
        task.add_done_callback(connecting.discard)
        return down

    server = await loop.create_server(accepted, "127.0.0.1", 0, backlog=4096)
    listen_port = server.sockets[0].getsockname()[1]
    tmp = ready.with_name(f"{ready.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({"url": f"http://127.0.0.1:{listen_port}"}))
    tmp.replace(ready)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--ready-file", required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.upstream, Path(args.ready_file)))
    else:
        uvloop.run(serve(args.upstream, Path(args.ready_file)))


if __name__ == "__main__":
    main()
