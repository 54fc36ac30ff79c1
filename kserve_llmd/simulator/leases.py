"""P/D leases on the prefill side: blocks of a finished prefill kept for the decode engine to pull.

NixlConnector semantics (REFERENCE 1.4): the prefill answers with ``kv_transfer_params`` and keeps the request's
blocks (``delay_free_blocks``) until the decode has read them or the lease runs out (30 s by default), after which
the blocks are freed (they keep their hashes, so later requests still hit them). ``pull`` hands the prompt token
ids over and releases the blocks at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from kserve_llmd.simulator.block_pool import Block


@dataclass(slots=True)
class Lease:
    transfer_id: str
    request_id: str
    blocks: list[Block]
    token_ids: list[int]
    timer: asyncio.TimerHandle | None = None


class LeaseTable:
    def __init__(self, release: Callable[[list[Block]], None], lease_seconds: float) -> None:
        self._release = release
        self._lease_seconds = lease_seconds
        self._by_transfer: dict[str, Lease] = {}
        self._by_request: dict[str, str] = {}
        self.expired = 0

    def __contains__(self, transfer_id: object) -> bool:
        return transfer_id in self._by_transfer

    def __len__(self) -> int:
        return len(self._by_transfer)

    def add(self, lease: Lease) -> None:
        self._by_transfer[lease.transfer_id] = lease
        self._by_request[lease.request_id] = lease.transfer_id
        if self._lease_seconds <= 0:
            self._expire(lease.transfer_id)
            return
        lease.timer = asyncio.get_running_loop().call_later(self._lease_seconds, self._expire, lease.transfer_id)

    def _drop(self, transfer_id: str) -> Lease | None:
        lease = self._by_transfer.pop(transfer_id, None)
        if lease is None:
            return None
        if self._by_request.get(lease.request_id) == transfer_id:
            del self._by_request[lease.request_id]
        if lease.timer is not None:
            lease.timer.cancel()
        self._release(lease.blocks)
        return lease

    def _expire(self, transfer_id: str) -> None:
        if self._drop(transfer_id) is not None:
            self.expired += 1

    def pull(self, transfer_id: str | None, request_id: str | None) -> Lease | None:
        """Take a lease by transfer id (or, for old clients, by request id) and free its blocks."""
        if not transfer_id and request_id:
            transfer_id = self._by_request.get(request_id)
        if not transfer_id:
            return None
        return self._drop(transfer_id)

    def close(self) -> None:
        for transfer_id in list(self._by_transfer):
            self._drop(transfer_id)
