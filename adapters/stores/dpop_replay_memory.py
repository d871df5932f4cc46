"""DPoP proofs already used, in memory: the fake for tests, and the store of a gateway that runs one process."""

from __future__ import annotations

__all__ = ["InMemoryProofReplayStore"]


class InMemoryProofReplayStore:
    """``ProofReplayStore`` for one process; expired keys are purged as new ones arrive."""

    def __init__(self, *, purge_every: int = 1024) -> None:
        self._expiry: dict[str, float] = {}
        self._purge_every, self._inserts = purge_every, 0

    def __len__(self) -> int:
        return len(self._expiry)

    async def first_use(self, key: str, expires_at: float, now: float) -> bool:
        seen = self._expiry.get(key)
        if seen is not None and seen > now:
            return False
        self._expiry[key] = expires_at
        self._inserts += 1
        if self._inserts % self._purge_every == 0:
            self._expiry = {k: t for k, t in self._expiry.items() if t > now}
        return True

    async def close(self) -> None:
        self._expiry.clear()
