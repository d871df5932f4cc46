"""Citizen sessions and sign-ins in progress in a SQLite file (WAL), shared by a host's gateway processes.

Rows are keyed by the SHA-256 of the session id or state: the file opens no session. Taking a
pending sign-in is one ``DELETE ... RETURNING``, so a state works once even when two workers race.
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
  code_verifier TEXT NOT NULL, created_us INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS citizen_session (id_hash TEXT PRIMARY KEY, national_id TEXT NOT NULL,
  csrf_token TEXT NOT NULL, acr TEXT NOT NULL, id_token TEXT NOT NULL, created_us INTEGER NOT NULL,
  last_seen_us INTEGER NOT NULL) WITHOUT ROWID;
"""
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
            self._db = db
        return self._db

    def _run(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._lock:
            return list(self._conn().execute(sql, args).fetchall())

    async def _call(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        return await asyncio.to_thread(self._run, sql, args)

    async def put(self, pending: PendingSignIn) -> None:
        await self._call("INSERT INTO sign_in_pending VALUES (?, ?, ?, ?)", pending.state_hash, pending.nonce,
                         pending.code_verifier, pending.created_us)  # fmt: skip

    async def take(self, state_hash: str, not_before_us: int) -> PendingSignIn | None:
        await self._call("DELETE FROM sign_in_pending WHERE created_us < ?", not_before_us)
        rows = await self._call("DELETE FROM sign_in_pending WHERE state_hash = ? "
                                "RETURNING state_hash, nonce, code_verifier, created_us", state_hash)  # fmt: skip
        if not rows:
            return None
        h, nonce, verifier, created = rows[0]
        return PendingSignIn(str(h), str(nonce), str(verifier), int(str(created)))

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

    async def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
