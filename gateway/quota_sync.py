"""Quotas shared by several gateway processes: a heartbeat board and the loop that applies its shares.

Each process, every ``interval_s`` (0.5 s), writes one row on the board (its id and,
per consumer, the requests/s asked of it since its last beat) and reads the rows of
every live process; ``fair_shares`` (pure, ``gateway/core/quotas.py``) turns them into
this process's share of each consumer's quota, which ``Admission`` then admits
locally. No exchange waits on the board: the hot path only counts. A process that
stops beating drops off the board after the board's ``ttl_s`` (2.5 s). If the board
cannot be reached, the last shares stay in force (logged).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Protocol

from gateway.core.quotas import Admission, fair_shares

__all__ = ["HEARTBEAT_S", "TTL_S", "QuotaBoard", "QuotaSync", "process_id"]

_log = logging.getLogger("passerelle.quotas")
#: How often each process beats; the liveness timeout of a silent process.
HEARTBEAT_S, TTL_S = 0.5, 2.5


class QuotaBoard(Protocol):
    """Where the live gateway processes meet (PostgreSQL, or memory in tests)."""

    async def beat(self, process: str, demand: Mapping[str, float]) -> dict[str, dict[str, float]]:
        """Record ``process`` alive now with its demand; return every live process's demand (its own included)."""
        ...

    async def leave(self, process: str) -> None: ...

    async def close(self) -> None: ...


def process_id() -> str:
    """Unique per process start (host, pid and a random part: a restarted pid is a new member)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class QuotaSync:
    """Feeds an ``Admission``'s demand to the board and applies the shares it gets back."""

    def __init__(
        self,
        board: QuotaBoard,
        admission: Admission,
        process: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.board, self.admission, self.process = board, admission, process or process_id()
        self._clock = clock
        self._last = clock()
        self.processes = 1  # live processes seen at the last beat

    async def step(self) -> int:
        """One heartbeat: report demand, learn the others', apply the shares; return the number of live processes."""
        now = self._clock()
        elapsed, self._last = max(now - self._last, 1e-3), now
        demand = {c: n / elapsed for c, n in self.admission.take_demand().items()}
        rows = await self.board.beat(self.process, demand)
        default, per = fair_shares(self.process, rows)
        self.admission.set_shares(default, per, self._clock())
        if len(rows) != self.processes:
            _log.info("quota shared by %d gateway processes", len(rows), extra={"fields": {"processes": len(rows)}})
        self.processes = len(rows)
        return self.processes

    async def run(self, interval_s: float = HEARTBEAT_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.step()
            except Exception:  # keep beating; the last shares stay in force
                _log.exception("quota heartbeat failed")

    async def stop(self) -> None:
        """Leave the board, so that the others take over this process's share at their next beat."""
        try:
            await self.board.leave(self.process)
        finally:
            await self.board.close()
