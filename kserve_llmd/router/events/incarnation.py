"""The SUB's connection monitor, read for the socket's whole life by a small watcher task.

- The FIRST ``EVENT_HANDSHAKE_SUCCEEDED`` lets the endpoint's task join (``source.handshake``).
- ``EVENT_DISCONNECTED`` then a handshake means the publisher came back on the same address: a NEW INCARNATION
  (an engine restart, or a TCP reconnect to the same engine). The watcher only flags it (``source.reincarnated``)
  and wakes the task if it is waiting for a message (cancels its parked receive); the task resets the endpoint
  and replays from 0 (``EndpointStream.reincarnate``), so the reset never interleaves with a batch or a replay.

A few monitor events per connection, none per message.
"""

from __future__ import annotations

import asyncio
import logging

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from kserve_llmd.router.events.source import Source

log = logging.getLogger(__name__)


async def watch(source: Source, monitor: zmq.asyncio.Socket) -> None:
    """Read ``monitor`` until it is closed (the endpoint replaced or stopped) or the task is cancelled."""
    while True:
        try:
            event = parse_monitor_message(await monitor.recv_multipart())
        except asyncio.CancelledError:
            raise
        except zmq.ZMQError:  # the monitor was closed under us (endpoint replaced): nothing left to watch
            return
        except Exception:  # a malformed monitor message: never expected, skip it
            log.exception("KV events from %s: bad socket monitor message", source.endpoint)
            continue
        kind = event["event"]
        if kind == zmq.EVENT_DISCONNECTED:
            source.disconnected = True
            log.debug("KV events from %s: publisher disconnected", source.endpoint)
        elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            if not source.handshake.is_set():
                source.disconnected = False
                source.handshake.set()
            elif source.disconnected:
                source.disconnected = False
                source.reincarnated = True
                parked = source.parked
                if parked is not None and not parked.done():
                    parked.cancel()  # wake the task waiting for a message: it resets before the next one
