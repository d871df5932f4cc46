"""Revocations in memory: the fake for tests, and the store for a single process that needs no durability."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.core.revocation import Revocation

__all__ = ["InMemoryRevocationStore"]


class InMemoryRevocationStore:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], Revocation] = {}
        self._version, self._seen = 0, 0

    async def add(self, r: Revocation) -> None:
        self._rows[(r.kind, r.value)] = r
        self._version += 1

    async def remove(self, kind: str, value: str) -> bool:
        found = self._rows.pop((kind, value), None) is not None
        self._version += found
        return found

    async def active(self, now_us: int) -> Sequence[Revocation]:
        live = [r for r in self._rows.values() if not r.until_us or r.until_us > now_us]
        return sorted(live, key=lambda r: (r.created_us, r.kind, r.value))  # as the SQL stores

    async def changed(self) -> bool:
        changed, self._seen = self._seen != self._version, self._version
        return changed

    async def close(self) -> None:
        return None
