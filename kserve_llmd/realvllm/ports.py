"""Ports for a real engine: picking free ones, checking they are still free just before the start, and telling a
port clash from the engine's log.

A port picked free can be taken by someone else before the engine binds it. vLLM then fails with "address already
in use", but WHERE that line lands varies: uvicorn's ``[Errno 98] ... address already in use`` is near the end,
while a ZMQ bind failure in the EngineCore (``zmq.error.ZMQError: Address already in use (addr='tcp://*:5557')``)
is followed by the API server's own long traceback. So the whole log is scanned, never only its tail.
"""

from __future__ import annotations

import errno
import re
import socket
from collections.abc import Iterable
from pathlib import Path

#: What a failed bind looks like in the log (Python's OSError, uvicorn, ZMQ), case-insensitive.
PORT_CLASH = re.compile(rb"address already in use|\[errno 98\]|eaddrinuse", re.IGNORECASE)


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that were free on 127.0.0.1 a moment ago (all held at once while picking)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def taken_ports(ports: Iterable[int]) -> list[int]:
    """The ports among ``ports`` that cannot be bound on every interface now (the engine binds ``tcp://*`` for its
    ZMQ sockets). ``SO_REUSEADDR`` as the servers set it, so a port in TIME_WAIT counts as free."""
    taken = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("", port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                taken.append(port)
    return taken


def log_shows_port_clash(path: Path | None) -> bool:
    """True when the log reports a failed bind anywhere (the log holds one start: it is truncated per attempt)."""
    if path is None:
        return False
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return PORT_CLASH.search(data) is not None
