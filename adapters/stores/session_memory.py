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

    async def put(self, pending: PendingSignIn) -> None:
        self._pending[pending.state_hash] = pending

    async def take(self, state_hash: str, not_before_us: int) -> PendingSignIn | None:
        self._pending = {k: p for k, p in self._pending.items() if p.created_us >= not_before_us}
        return self._pending.pop(state_hash, None)

    async def create(self, session: CitizenSession) -> None:
        self._sessions[session.id_hash] = session

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
