"""Run-time mandate changes in SQLite, next to the consents: shared by every gateway on the file.

Each row overrides the configured mandate with the same id (``doc`` NULL is a
deletion). ``mandate_generation`` counts changes so that other instances can see,
with one cheap read, that they must reload.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from adapters.stores._sqlite import open_wal
from adapters.stores.mandate_memory import MandateOverride

__all__ = ["SqliteMandateStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mandate_overrides (
  id TEXT PRIMARY KEY,
  doc TEXT,
  updated_us INTEGER NOT NULL,
  updated_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mandate_generation (gen INTEGER NOT NULL);
INSERT INTO mandate_generation (gen) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM mandate_generation);
"""


class SqliteMandateStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            db = open_wal(self._path, isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._db = db
        return self._db

    async def generation(self) -> int:
        return int(self._conn().execute("SELECT gen FROM mandate_generation").fetchone()[0])

    async def overrides(self) -> tuple[int, list[MandateOverride]]:
        def read() -> tuple[int, list[MandateOverride]]:
            db = self._conn()
            db.execute("BEGIN")
            try:
                gen = int(db.execute("SELECT gen FROM mandate_generation").fetchone()[0])
                rows = db.execute("SELECT id, doc, updated_us, updated_by FROM mandate_overrides").fetchall()
            finally:
                db.execute("COMMIT")
            return gen, [MandateOverride(r[0], json.loads(r[1]) if r[1] else None, r[2], r[3]) for r in rows]

        return await asyncio.to_thread(read)

    async def put(self, mandate_id: str, doc: dict[str, Any] | None, updated_us: int, updated_by: str) -> int:
        def write() -> int:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO mandate_overrides (id, doc, updated_us, updated_by) VALUES (?,?,?,?) "
                    "ON CONFLICT(id) DO UPDATE SET doc=excluded.doc, updated_us=excluded.updated_us, "
                    "updated_by=excluded.updated_by",
                    (mandate_id, json.dumps(doc, sort_keys=True) if doc is not None else None, updated_us, updated_by),
                )
                db.execute("UPDATE mandate_generation SET gen = gen + 1")
                gen = int(db.execute("SELECT gen FROM mandate_generation").fetchone()[0])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return gen

        return await asyncio.to_thread(write)

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
