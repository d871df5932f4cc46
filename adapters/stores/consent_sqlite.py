"""Consents in SQLite (WAL): shared by every gateway process on the same file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from adapters.stores._sqlite import open_wal
from consent.model import Consent

__all__ = ["SqliteConsentStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS consents (
  id TEXT PRIMARY KEY,
  subject TEXT NOT NULL,
  consumer TEXT NOT NULL,
  purpose TEXT NOT NULL,
  categories TEXT NOT NULL,
  granted_us INTEGER NOT NULL,
  expires_us INTEGER NOT NULL,
  single_use INTEGER NOT NULL,
  revoked_us INTEGER NOT NULL DEFAULT 0,
  used_us INTEGER NOT NULL DEFAULT 0,
  extra TEXT NOT NULL DEFAULT '{}',
  procedure_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS consents_lookup ON consents (subject, consumer, purpose);
"""
_COLUMNS = (
    "id, subject, consumer, purpose, categories, granted_us, expires_us, single_use, revoked_us, used_us, extra, "
    "procedure_id"
)


def _row(r: tuple) -> Consent:  # type: ignore[type-arg]
    return Consent(
        id=r[0],
        subject=r[1],
        consumer=r[2],
        purpose=r[3],
        categories=frozenset(json.loads(r[4])),
        granted_us=r[5],
        expires_us=r[6],
        single_use=bool(r[7]),
        revoked_us=r[8],
        used_us=r[9],
        extra=json.loads(r[10]),
        procedure_id=r[11],
    )


def _migrate(db: sqlite3.Connection) -> None:
    """Stores written before explicit requests existed lack ``procedure_id``."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(consents)")}
    if "procedure_id" not in columns:
        db.execute("ALTER TABLE consents ADD COLUMN procedure_id TEXT NOT NULL DEFAULT ''")


class SqliteConsentStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None
        # One connection, used from the loop and from worker threads: statements are serialised so
        # that no thread reads another's results (sqlite3's rowcount is per connection).
        self._lock = threading.Lock()

    def _rows(self, sql: str, params: tuple[object, ...]) -> list[tuple]:  # type: ignore[type-arg]
        with self._lock:
            return self._conn().execute(sql, params).fetchall()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            db = open_wal(self._path, isolation_level=None)
            db.executescript(_SCHEMA)
            _migrate(db)
            self._db = db
        return self._db

    async def for_subject(self, subject: str, consumer: str, purpose: str) -> Sequence[Consent]:
        rows = self._rows(
            f"SELECT {_COLUMNS} FROM consents WHERE subject=? AND consumer=? AND purpose=?",
            (subject, consumer, purpose),
        )
        return [_row(r) for r in rows]

    async def of_subject(self, subject: str) -> Sequence[Consent]:
        rows = self._rows(f"SELECT {_COLUMNS} FROM consents WHERE subject=? ORDER BY granted_us DESC", (subject,))
        return [_row(r) for r in rows]

    async def get(self, consent_id: str) -> Consent | None:
        rows = self._rows(f"SELECT {_COLUMNS} FROM consents WHERE id=?", (consent_id,))
        return _row(rows[0]) if rows else None

    async def add(self, c: Consent) -> None:
        await asyncio.to_thread(
            self._rows,
            f"INSERT INTO consents ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                c.id,
                c.subject,
                c.consumer,
                c.purpose,
                json.dumps(sorted(c.categories)),
                c.granted_us,
                c.expires_us,
                int(c.single_use),
                c.revoked_us,
                c.used_us,
                json.dumps(c.extra),
                c.procedure_id,
            ),
        )

    async def revoke(self, consent_id: str, subject: str, now_us: int) -> bool:
        rows = await asyncio.to_thread(
            self._rows,
            "UPDATE consents SET revoked_us=? WHERE id=? AND subject=? AND revoked_us=0 RETURNING id",
            (now_us, consent_id, subject),
        )
        return len(rows) == 1

    async def spend(self, consent_id: str, now_us: int) -> bool:
        # RETURNING makes the answer this statement's own, whatever runs on other connections.
        rows = self._rows(
            "UPDATE consents SET used_us=? WHERE id=? AND (single_use=0 OR used_us=0) RETURNING id",
            (now_us, consent_id),
        )
        return len(rows) == 1

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
