"""Citizen sessions and sign-ins in progress, in memory: the fake for tests and a one-process gateway."""

from __future__ import annotations

import dataclasses

from gateway.core.citizen_sessions import CitizenSession, PendingSignIn

__all__ = ["InMemorySessionStore"]


class InMemorySessionStore:
    """``SessionStore`` and ``PendingSignInStore`` in dictionaries keyed by hashes."""

    def __init__(self) -> None:
        self._pending: dict[str, PendingSignIn] = {}
        self._sessions: dict[str, CitizenSession] = {}

    async def put(self, pending: PendingSignIn, *, not_before_us: int, max_per_client: int, max_total: int) -> None:
        await self.prune(not_before_us)
        self._pending[pending.state_hash] = pending
        mine = [p for p in self._pending.values() if p.client_hash == pending.client_hash]
        for old in sorted(mine, key=lambda p: p.created_us)[: max(0, len(mine) - max_per_client)]:
            self._pending.pop(old.state_hash, None)
        for old in sorted(self._pending.values(), key=lambda p: p.created_us)[: max(0, len(self._pending) - max_total)]:
            self._pending.pop(old.state_hash, None)

    async def take(self, state_hash: str, not_before_us: int) -> PendingSignIn | None:
        await self.prune(not_before_us)
        return self._pending.pop(state_hash, None)

    async def prune(self, not_before_us: int) -> int:
        before = len(self._pending)
        self._pending = {k: p for k, p in self._pending.items() if p.created_us >= not_before_us}
        return before - len(self._pending)

    async def create(self, session: CitizenSession) -> None:
        self._sessions[session.id_hash] = session

    async def purge(self, *, seen_before_us: int, created_before_us: int) -> int:
        gone = [k for k, s in self._sessions.items()
                if s.last_seen_us < seen_before_us or s.created_us < created_before_us]  # fmt: skip
        for key in gone:
            del self._sessions[key]
        return len(gone)

    async def get(self, session_hash: str) -> CitizenSession | None:
        return self._sessions.get(session_hash)

    async def touch(self, session_hash: str, now_us: int) -> None:
        found = self._sessions.get(session_hash)
        if found is not None:
            self._sessions[session_hash] = dataclasses.replace(found, last_seen_us=now_us)

    async def end(self, session_hash: str) -> None:
        self._sessions.pop(session_hash, None)

    async def close(self) -> None:
        self._pending.clear()
        self._sessions.clear()
