"""In-memory mandate overrides for unit tests (same behaviour as the SQLite store)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["InMemoryMandateStore", "MandateOverride"]


@dataclass(frozen=True, slots=True)
class MandateOverride:
    """A run-time change of one mandate: its new document, or None when it was deleted."""

    id: str
    doc: dict[str, Any] | None
    updated_us: int
    updated_by: str


class InMemoryMandateStore:
    def __init__(self) -> None:
        self._rows: dict[str, MandateOverride] = {}
        self._gen = 0

    async def generation(self) -> int:
        return self._gen

    async def overrides(self) -> tuple[int, list[MandateOverride]]:
        return self._gen, list(self._rows.values())

    async def put(self, mandate_id: str, doc: dict[str, Any] | None, updated_us: int, updated_by: str) -> int:
        self._rows[mandate_id] = MandateOverride(
            mandate_id, dict(doc) if doc is not None else None, updated_us, updated_by
        )
        self._gen += 1
        return self._gen

    async def close(self) -> None:
        return None
