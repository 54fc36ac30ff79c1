"""KV-event ingestion: one ZMQ SUB socket and one task per endpoint, applying events in order to the index.

Data flow::

    engine PUB ──[topic, seq, payload]──▶ SUB (one per endpoint) ──decode_batch──▶ EndpointApplier ──▶ KVIndex
                                               │ gap (seq > last+1)
                                               ▼
    engine ROUTER (replay) ◀──[b"", start]── DEALER: batches [start, seq) applied in order, else reset endpoint

Modules (each part of the design below lives in one of them)::

    ingester.py     KVEventIngester: lifecycle (start / wait_joined / aclose), add / remove endpoints
    source.py       per-endpoint state, the SUB socket and its connection monitor, rate-limited warnings
    stream.py       the per-endpoint task: join, receive loop, sequence checks (gap, restart), apply, reset
    replay.py       the replay client (DEALER ↔ the engine's ROUTER, both frame layouts) and range filling
    incarnation.py  the monitor watcher: a handshake after a disconnect is a new publisher incarnation

- Endpoint identity comes from the SOCKET the message arrived on; the topic is never parsed (subscribe to ``b""``):
  vLLM's llm-d topic ``kv@ip:port@model``, vllm-router's empty topic and anything else are all accepted.
- Sequence numbers (8-byte big-endian, per publisher): ``seq == last+1`` is applied; ``seq > last+1`` is a gap:
  replay ``[last+1, seq)`` over a DEALER to the endpoint's replay ROUTER, or, without a replay endpoint or when
  replay fails or comes back incomplete, RESET the endpoint (drop its entries, log, count); ``seq <= last`` means
  the engine restarted: reset (the SUB's reconnect is the other, earlier sign of a restart: see "Reconnects").
- Joining (PUB/SUB's "slow joiner"): a SUB receives only what is published after its connection handshake AND
  its subscription reached the publisher; a batch published before that is silently lost, and if nothing follows
  it no gap ever shows (measured on a real vLLM 0.32 with a request sent right after ``connect``: 3 joins in 55
  missed the request's BlockStored). So each endpoint's task first JOINS: it waits for the SUB's handshake (a ZMQ
  socket monitor), then, with ``replay_on_join`` and a replay endpoint, replays every buffered batch from 0 (blocks
  stored before the router started are indexed and can be chained), and only then reads the live stream. Live
  messages that the join replay already applied (published after the subscription, before the replay answered)
  are recognised by (seq, payload hash) and skipped; anything else with ``seq <= last`` is still a restart.
  ``start()`` waits up to ``join_timeout`` for the joins (``wait_joined()`` waits on demand). With a replay
  endpoint nothing published before or after the join is missed. Without one, only the handshake can be awaited:
  the subscription frame follows it on the same connection, so in practice (0 of 40 joins on the real engine) a
  request sent after the join is seen, but PUB/SUB gives no hard guarantee. If the join could not replay (failed,
  timed out), the first live message with ``seq > 0`` retries the best-effort replay from 0 as before.
- Where the replay endpoint comes from: ``add_endpoint(..., replay_url)`` (the router passes what
  ``GET /kv_event_sources`` reported), else ``Endpoint.kv_events_replay`` (an explicit
  ``--endpoint URL=PUB,REPLAY``). Without either, there is no replay: gaps reset the endpoint.
- Reconnects (a new incarnation of the publisher): the SUB reconnects by itself when its engine dies and comes back
  on the same address, and what the new engine publishes before the reconnect completes is lost, so the sequence
  alone cannot tell a restart (the first batch seen may well be numbered above the last one of the dead engine).
  The socket monitor therefore stays on for the SUB's whole life (``EVENT_DISCONNECTED``,
  ``EVENT_HANDSHAKE_SUCCEEDED``: a few events per connection, none per message) in a small watcher task, and a
  handshake that follows a disconnect is treated as a NEW INCARNATION: the endpoint is reset (entries dropped through
  the applier, last sequence forgotten, ``restarts`` and ``resets`` counted) and, with a replay endpoint, replayed
  from 0 as on join; without one, the next live batch is taken whatever its sequence. The reset runs in the
  endpoint's own task (the watcher only flags it and wakes the task if it is waiting for a message), so it never
  interleaves with a batch or a replay; the per-message loop is unchanged (the flag is read once per wake-up, before
  waiting). A transient TCP reconnect to the SAME engine looks the same and costs one reset + replay (logged).
  Limits: ordering between the monitor and the data stream is not synchronised, so a live batch of the new
  incarnation that was already queued when the handshake is handled is dropped by the reset (with a replay
  endpoint, the replay brings it back); a dead incarnation's entries never survive the reconnect.
- Replay replies (after the DEALER's empty delimiter): vLLM 0.33 ``[topic, seq, payload]`` ending with
  ``[b"", END, b""]``; vLLM <= 0.24 ``[seq, payload]`` ending with ``[END, b""]``. Both accepted.
- Malformed frames and undecodable payloads are dropped and counted; logs are rate-limited (one line per endpoint
  and kind per ``log_interval`` seconds, with the count suppressed since). The loop never dies on input.

Parameters: see ``KVEventIngester``.
"""

from kserve_llmd.router.events.ingester import KVEventIngester

__all__ = ["KVEventIngester"]
