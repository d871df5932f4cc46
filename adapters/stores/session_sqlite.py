"""Citizen sessions and sign-ins in progress in a SQLite file (WAL), shared by a host's gateway processes.

Rows are keyed by the SHA-256 of the session id or state: the file opens no session. Taking a
pending sign-in is one ``DELETE ... RETURNING``, so a state works once even when two workers race.
Expired rows are deleted: sign-ins on each ``put``/``take``/``prune``, sessions by ``purge``
(``CitizenLogin`` calls it on each sign-in and periodically). Sign-ins in progress are capped per
client and in all within the ``put``'s transaction, the oldest going first.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from adapters.stores._sqlite import open_wal
from gateway.core.citizen_sessions import CitizenSession, PendingSignIn

__all__ = ["SqliteSessionStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sign_in_pending (state_hash TEXT PRIMARY KEY, nonce TEXT NOT NULL,
  code_verifier TEXT NOT NULL, created_us INTEGER NOT NULL, binding_hash TEXT NOT NULL DEFAULT '',
  client_hash TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS citizen_session (id_hash TEXT PRIMARY KEY, national_id TEXT NOT NULL,
  csrf_token TEXT NOT NULL, acr TEXT NOT NULL, id_token TEXT NOT NULL, created_us INTEGER NOT NULL,
  last_seen_us INTEGER NOT NULL) WITHOUT ROWID;
"""
# Added after the first version: a file from it gains them (its rows' empty binding finishes no sign-in).
_ADDED_COLUMNS = ("binding_hash", "client_hash")
_INDEXES = """
CREATE INDEX IF NOT EXISTS sign_in_pending_created ON sign_in_pending (created_us);
CREATE INDEX IF NOT EXISTS sign_in_pending_client ON sign_in_pending (client_hash, created_us);
CREATE INDEX IF NOT EXISTS citizen_session_seen ON citizen_session (last_seen_us);
CREATE INDEX IF NOT EXISTS citizen_session_created ON citizen_session (created_us);
"""
_PENDING = "state_hash, nonce, code_verifier, created_us, binding_hash, client_hash"
_COLUMNS = "id_hash, national_id, csrf_token, acr, id_token, created_us, last_seen_us"


class SqliteSessionStore:
    """``SessionStore`` and ``PendingSignInStore`` over one SQLite file; calls run in a worker thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = open_wal(self._path, isolation_level=None, synchronous="NORMAL")
            db.executescript(_SCHEMA)
            have = {str(row[1]) for row in db.execute("PRAGMA table_info(sign_in_pending)")}
            for column in _ADDED_COLUMNS:
                if column not in have:
                    db.execute(f"ALTER TABLE sign_in_pending ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
            db.executescript(_INDEXES)
            self._db = db
        return self._db

    def _run(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._lock:
            return list(self._conn().execute(sql, args).fetchall())

    async def _call(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        return await asyncio.to_thread(self._run, sql, args)

    def _put(self, p: PendingSignIn, not_before_us: int, max_per_client: int, max_total: int) -> None:
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM sign_in_pending WHERE created_us < ?", (not_before_us,))
                db.execute(f"INSERT INTO sign_in_pending ({_PENDING}) VALUES (?, ?, ?, ?, ?, ?)",
                           (p.state_hash, p.nonce, p.code_verifier, p.created_us, p.binding_hash, p.client_hash))
                db.execute("DELETE FROM sign_in_pending WHERE state_hash IN (SELECT state_hash FROM sign_in_pending "
                           "WHERE client_hash = ? ORDER BY created_us DESC, state_hash LIMIT -1 OFFSET ?)",
                           (p.client_hash, max_per_client))
                db.execute("DELETE FROM sign_in_pending WHERE state_hash IN (SELECT state_hash FROM sign_in_pending "
                           "ORDER BY created_us DESC, state_hash LIMIT -1 OFFSET ?)", (max_total,))  # fmt: skip
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    async def put(self, pending: PendingSignIn, *, not_before_us: int, max_per_client: int, max_total: int) -> None:
        await asyncio.to_thread(self._put, pending, not_before_us, max_per_client, max_total)

    async def take(self, state_hash: str, not_before_us: int) -> PendingSignIn | None:
        await self.prune(not_before_us)
        rows = await self._call(f"DELETE FROM sign_in_pending WHERE state_hash = ? RETURNING {_PENDING}", state_hash)
        if not rows:
            return None
        h, nonce, verifier, created, binding, client = rows[0]
        return PendingSignIn(str(h), str(nonce), str(verifier), int(str(created)), str(binding), str(client))

    async def prune(self, not_before_us: int) -> int:
        rows = await self._call("DELETE FROM sign_in_pending WHERE created_us < ? RETURNING 1", not_before_us)
        return len(rows)

    async def create(self, session: CitizenSession) -> None:
        s = session
        await self._call(f"INSERT INTO citizen_session ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", s.id_hash,
                         s.national_id, s.csrf_token, s.acr, s.id_token, s.created_us, s.last_seen_us)  # fmt: skip

    async def get(self, session_hash: str) -> CitizenSession | None:
        rows = await self._call(f"SELECT {_COLUMNS} FROM citizen_session WHERE id_hash = ?", session_hash)
        if not rows:
            return None
        h, nid, csrf, acr, tok, created, seen = rows[0]
        return CitizenSession(str(h), str(nid), str(csrf), str(acr), str(tok), int(str(created)), int(str(seen)))

    async def touch(self, session_hash: str, now_us: int) -> None:
        await self._call("UPDATE citizen_session SET last_seen_us = ? WHERE id_hash = ?", now_us, session_hash)

    async def end(self, session_hash: str) -> None:
        await self._call("DELETE FROM citizen_session WHERE id_hash = ?", session_hash)

    async def purge(self, *, seen_before_us: int, created_before_us: int) -> int:
        rows = await self._call("DELETE FROM citizen_session WHERE last_seen_us < ? OR created_us < ? RETURNING 1",
                                seen_before_us, created_before_us)  # fmt: skip
        return len(rows)

    async def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
