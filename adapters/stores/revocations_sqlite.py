"""Revocations in SQLite (WAL): durable, and shared by every gateway process on the same file.

``changed()`` reads ``PRAGMA data_version`` on a long-lived connection: it moves
when another connection (this process's writer or another process) commits,
so the sync task reloads only when something happened.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from adapters.stores._sqlite import open_wal
from gateway.core.revocation import Revocation

__all__ = ["SqliteRevocationStore"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS revocations (
  kind TEXT NOT NULL,
  value TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  created_us INTEGER NOT NULL,
  until_us INTEGER NOT NULL DEFAULT 0,
  by TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (kind, value)
);
"""


class SqliteRevocationStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._data_version = -1

    def _connect(self) -> sqlite3.Connection:
        db = open_wal(self._path, isolation_level=None)
        db.executescript(_SCHEMA)
        return db

    def _conns(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        if self._writer is None or self._reader is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._writer, self._reader = self._connect(), self._connect()
        return self._writer, self._reader

    def _run(self, fn: Callable[[], _T]) -> Awaitable[_T]:
        def locked() -> _T:
            with self._lock:
                return fn()

        return asyncio.to_thread(locked)

    async def add(self, r: Revocation) -> None:
        def add() -> None:
            self._conns()[0].execute(
                "INSERT OR REPLACE INTO revocations (kind, value, reason, created_us, until_us, by) "
                "VALUES (?, ?, ?, ?, ?, ?)", (r.kind, r.value, r.reason, r.created_us, r.until_us, r.by),
            )

        await self._run(add)

    async def remove(self, kind: str, value: str) -> bool:
        def remove() -> bool:
            cur = self._conns()[0].execute("DELETE FROM revocations WHERE kind = ? AND value = ?", (kind, value))
            return cur.rowcount > 0

        return bool(await self._run(remove))

    async def active(self, now_us: int) -> Sequence[Revocation]:
        def active() -> list[Revocation]:
            rows = self._conns()[1].execute(
                "SELECT kind, value, reason, created_us, until_us, by FROM revocations "
                "WHERE until_us = 0 OR until_us > ? ORDER BY created_us", (now_us,),
            ).fetchall()
            return [Revocation(*row) for row in rows]

        return list(await self._run(active))

    async def changed(self) -> bool:
        def changed() -> bool:
            (version,) = self._conns()[1].execute("PRAGMA data_version").fetchone()
            moved, self._data_version = version != self._data_version, version
            return bool(moved)

        return bool(await self._run(changed))

    async def close(self) -> None:
        def close() -> None:
            for db in (self._writer, self._reader):
                if db is not None:
                    db.close()
            self._writer = self._reader = None

        await self._run(close)
