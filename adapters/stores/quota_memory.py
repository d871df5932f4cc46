"""The quota heartbeat board in memory: the fake for tests (several ``QuotaSync`` on one board)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

__all__ = ["InMemoryQuotaBoard"]


class InMemoryQuotaBoard:
    def __init__(self, ttl_s: float = 2.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self._clock = ttl_s, clock
        self.rows: dict[str, tuple[float, dict[str, float]]] = {}
        self.broken = False

    async def beat(self, process: str, demand: Mapping[str, float]) -> dict[str, dict[str, float]]:
        if self.broken:
            raise ConnectionError("board unavailable")
        now = self._clock()
        self.rows[process] = (now, dict(demand))
        return {p: dict(d) for p, (seen, d) in self.rows.items() if seen > now - self.ttl_s}

    async def leave(self, process: str) -> None:
        self.rows.pop(process, None)

    async def close(self) -> None:
        return None
