"""DPoP proofs already used, in a SQLite file (WAL) shared by every gateway process of one host.

One statement records a key unless an unexpired row holds it (an upsert whose update applies
only to an expired row), so two workers racing on the same proof cannot both win. Expired rows
are deleted at most every ``purge_every_s`` seconds: the table holds one acceptance window.
Replay rows need no durability across a power cut (``synchronous=NORMAL``): a lost row lets a
proof be replayed only within its remaining seconds of freshness.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from adapters.stores._sqlite import open_wal

__all__ = ["SqliteProofReplayStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dpop_replay (key TEXT PRIMARY KEY, expires_at REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dpop_replay_expiry ON dpop_replay (expires_at);
"""
_FIRST_USE = (
    "INSERT INTO dpop_replay (key, expires_at) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE dpop_replay.expires_at <= ?"
)


class SqliteProofReplayStore:
    """``ProofReplayStore`` over one SQLite file; calls run in a worker thread, one at a time."""

    def __init__(self, path: Path, *, purge_every_s: float = 10.0) -> None:
        self._path, self._purge_every_s = path, purge_every_s
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._last_purge = 0.0

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = open_wal(self._path, isolation_level=None, synchronous="NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def _first_use(self, key: str, expires_at: float, now: float) -> bool:
        with self._lock:
            db = self._conn()
            if now - self._last_purge >= self._purge_every_s:
                db.execute("DELETE FROM dpop_replay WHERE expires_at <= ?", (now,))
                self._last_purge = now
            return db.execute(_FIRST_USE, (key, expires_at, now)).rowcount == 1

    async def first_use(self, key: str, expires_at: float, now: float) -> bool:
        return await asyncio.to_thread(self._first_use, key, expires_at, now)

    async def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
