"""Citizen sessions and sign-ins in progress in PostgreSQL: shared by every gateway process (and pod).

Same behaviour as ``SqliteSessionStore``: rows keyed by SHA-256 hashes, a pending sign-in taken by
one ``DELETE ... RETURNING`` (a state works once, even across pods).
"""

from __future__ import annotations

from typing import Any

import psycopg

from adapters.stores._pg_sync import ThreadedPg
from gateway.core.citizen_sessions import CitizenSession, PendingSignIn

__all__ = ["MIGRATIONS", "PostgresSessionStore"]

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {s}.sign_in_pending (state_hash text PRIMARY KEY, nonce text NOT NULL,
      code_verifier text NOT NULL, created_us bigint NOT NULL);
    CREATE TABLE {s}.citizen_session (id_hash text PRIMARY KEY, national_id text NOT NULL,
      csrf_token text NOT NULL, acr text NOT NULL, id_token text NOT NULL, created_us bigint NOT NULL,
      last_seen_us bigint NOT NULL);
    """,
)
_COLUMNS = "id_hash, national_id, csrf_token, acr, id_token, created_us, last_seen_us"


class PostgresSessionStore:
    """``SessionStore`` and ``PendingSignInStore`` over PostgreSQL (psycopg 3, a worker thread)."""

    def __init__(self, dsn: str, *, schema: str = "passerelle_sessions") -> None:
        self._db = ThreadedPg(dsn, schema, MIGRATIONS, connect_timeout=5)
        self.schema = self._db.schema

    async def _call(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        query = sql.replace("{s}", self.schema).encode()

        def run(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            cur = conn.execute(query, args)
            return list(cur.fetchall()) if cur.description else []

        return await self._db.run(run)

    async def put(self, pending: PendingSignIn) -> None:
        await self._call("INSERT INTO {s}.sign_in_pending VALUES (%s, %s, %s, %s)", pending.state_hash,
                         pending.nonce, pending.code_verifier, pending.created_us)  # fmt: skip

    async def take(self, state_hash: str, not_before_us: int) -> PendingSignIn | None:
        await self._call("DELETE FROM {s}.sign_in_pending WHERE created_us < %s", not_before_us)
        rows = await self._call("DELETE FROM {s}.sign_in_pending WHERE state_hash = %s "
                                "RETURNING state_hash, nonce, code_verifier, created_us", state_hash)  # fmt: skip
        return PendingSignIn(*rows[0]) if rows else None

    async def create(self, session: CitizenSession) -> None:
        s = session
        await self._call(f"INSERT INTO {{s}}.citizen_session ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                         s.id_hash, s.national_id, s.csrf_token, s.acr, s.id_token, s.created_us,
                         s.last_seen_us)  # fmt: skip

    async def get(self, session_hash: str) -> CitizenSession | None:
        rows = await self._call(f"SELECT {_COLUMNS} FROM {{s}}.citizen_session WHERE id_hash = %s", session_hash)
        return CitizenSession(*rows[0]) if rows else None

    async def touch(self, session_hash: str, now_us: int) -> None:
        await self._call("UPDATE {s}.citizen_session SET last_seen_us = %s WHERE id_hash = %s", now_us, session_hash)

    async def end(self, session_hash: str) -> None:
        await self._call("DELETE FROM {s}.citizen_session WHERE id_hash = %s", session_hash)

    async def close(self) -> None:
        self._db.close()
