"""Speculative index entries (llm-d's ``speculativeIndexing``): the blocks a routing decision is about to cache.

Between picking an endpoint for a prompt and that engine's BlockStored events reaching the router lies a blind
spot: the engine's queue, one step, the event path. A second request with the same prefix arriving in it sees the
prefix cached nowhere and is placed by load alone, so the group ends up split over two engines, each caching its
prefix (benchmarks/README.md, "Groups split by the blind spot": 32-37 of shared-prefix's 150 groups split in its
warm-up stage without this). With speculation on, ``PreciseMatcher.observe_routed`` records the routed request's
block keys for the picked endpoint for ``ttl_s`` seconds, and ``PreciseMatcher.match`` takes, per endpoint, the
longer of the two runs::

    matched[e] = max(index_run(e), speculative_run(e))
    speculative_run(e) = longest consecutive prefix of the prompt's keys recorded for e and not yet expired

Kept apart from the event-fed index, so that an expiry never removes a confirmed block and the event path knows
nothing of speculation. A key recorded again (another request with that prefix) takes the later deadline. Expiry is
lazy and first-in first-out (one TTL for all), on every ``add`` and ``extend``. Memory: the keys of the requests
routed in the last ``ttl_s`` seconds. The entry goes to the endpoint the scheduler picked: a request that then fails
over to another endpoint leaves it on the first until it expires (as llm-d's does).

Cost of ``extend``: keys are chained (each encodes its whole prefix), a request records all of its keys at once,
and a key recorded again by a later request is part of that request's chain too, so along any prompt's chain what
an endpoint holds is always a PREFIX (its keys' deadlines never increase along the chain). Hence one lookup
(``keys[m]``, m = the confirmed run) decides whether the speculative run is longer, and a binary search finds it:
O(endpoints holding entries + log(prompt blocks)) per decision, not O(endpoints × prompt blocks).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence

from kserve_llmd.types import BlockKey, Clock, EndpointId

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """Seconds in a Go duration string, as llm-d's configs write them (``"2s"``, ``"500ms"``, ``"1m30s"``)."""
    if not text or _GO_DURATION.sub("", text):
        raise ValueError(f"{text!r} is not a duration such as '2s' or '500ms'")
    return sum(float(number) * _UNIT_S[unit] for number, unit in _GO_DURATION.findall(text))


class SpeculativeEntries:
    """Block keys routed to each endpoint in the last ``ttl_s`` seconds of ``clock``."""

    def __init__(self, ttl_s: float, clock: Clock) -> None:
        if ttl_s <= 0:
            raise ValueError(f"the speculative TTL must be positive, got {ttl_s}")
        self.ttl_s = ttl_s
        self._clock = clock
        self._held: dict[EndpointId, dict[BlockKey, float]] = {}  # endpoint → key → deadline
        self._queue: deque[tuple[float, EndpointId, Sequence[BlockKey]]] = deque()  # in deadline order

    def __len__(self) -> int:
        """Live (endpoint, key) entries, expired ones included until the next ``add`` or ``extend``."""
        return sum(map(len, self._held.values()))

    def add(self, endpoint: EndpointId, keys: Sequence[BlockKey]) -> None:
        """Record ``keys`` (kept by reference, never copied) as about to be cached on ``endpoint``."""
        now = self._clock()
        self._expire(now)
        deadline = now + self.ttl_s
        self._held.setdefault(endpoint, {}).update(dict.fromkeys(keys, deadline))
        self._queue.append((deadline, endpoint, keys))

    def extend(self, keys: Sequence[BlockKey], matched: dict[EndpointId, int]) -> None:
        """Raise ``matched[e]`` (a confirmed run, for the candidate endpoints) to e's speculative run where longer."""
        if not self._queue:
            return
        self._expire(self._clock())
        total = len(keys)
        for endpoint, held in self._held.items():
            confirmed = matched.get(endpoint)  # None: not a candidate
            if confirmed is None or confirmed >= total or keys[confirmed] not in held:
                continue
            low, high = confirmed + 1, total  # the run is at least low; held keys form a prefix of the chain
            while low < high:
                middle = (low + high + 1) // 2
                if keys[middle - 1] in held:
                    low = middle
                else:
                    high = middle - 1
            matched[endpoint] = low

    def _expire(self, now: float) -> None:
        queue = self._queue
        while queue and queue[0][0] <= now:
            _, endpoint, keys = queue.popleft()
            held = self._held.get(endpoint)
            if held is None:
                continue
            for key in keys:
                deadline = held.get(key)
                if deadline is not None and deadline <= now:  # not recorded again since
                    del held[key]
            if not held:
                del self._held[endpoint]
