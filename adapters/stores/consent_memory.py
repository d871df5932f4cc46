"""In-memory consent store for unit tests (same behaviour as the SQLite one)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from consent.model import Consent

__all__ = ["InMemoryConsentStore"]


class InMemoryConsentStore:
    def __init__(self, consents: Sequence[Consent] = ()) -> None:
        self._by_id: dict[str, Consent] = {c.id: c for c in consents}

    async def for_subject(self, subject: str, consumer: str, purpose: str) -> Sequence[Consent]:
        return [c for c in self._by_id.values() if (c.subject, c.consumer, c.purpose) == (subject, consumer, purpose)]

    async def of_subject(self, subject: str) -> Sequence[Consent]:
        return sorted((c for c in self._by_id.values() if c.subject == subject), key=lambda c: -c.granted_us)

    async def get(self, consent_id: str) -> Consent | None:
        return self._by_id.get(consent_id)

    async def add(self, c: Consent) -> None:
        if c.id in self._by_id:
            raise KeyError(c.id)
        self._by_id[c.id] = c

    async def revoke(self, consent_id: str, subject: str, now_us: int) -> bool:
        c = self._by_id.get(consent_id)
        if c is None or c.subject != subject or c.revoked_us:
            return False
        self._by_id[consent_id] = dataclasses.replace(c, revoked_us=now_us)
        return True

    async def spend(self, consent_id: str, now_us: int) -> bool:
        c = self._by_id.get(consent_id)
        if c is None or (c.single_use and c.used_us):
            return False
        self._by_id[consent_id] = dataclasses.replace(c, used_us=now_us)
        return True

    async def close(self) -> None:
        return None
