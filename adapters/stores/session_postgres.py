"""Citizen sessions and sign-ins in progress in PostgreSQL: shared by every gateway process (and pod).

Same behaviour as ``SqliteSessionStore``: rows keyed by SHA-256 hashes, a pending sign-in taken by
one ``DELETE ... RETURNING`` (a state works once, even across pods), expired rows deleted, sign-ins in
progress capped per client and in all within the ``put``'s transaction.
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
    # The browser binding and the client of a sign-in; indexes for the deletions of expired rows.
    """
    ALTER TABLE {s}.sign_in_pending ADD COLUMN binding_hash text NOT NULL DEFAULT '',
      ADD COLUMN client_hash text NOT NULL DEFAULT '';
    CREATE INDEX ON {s}.sign_in_pending (created_us);
    CREATE INDEX ON {s}.sign_in_pending (client_hash, created_us);
    CREATE INDEX ON {s}.citizen_session (last_seen_us);
    CREATE INDEX ON {s}.citizen_session (created_us);
    """,
)
_COLUMNS = "id_hash, national_id, csrf_token, acr, id_token, created_us, last_seen_us"
_PENDING = "state_hash, nonce, code_verifier, created_us, binding_hash, client_hash"


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

    async def put(self, pending: PendingSignIn, *, not_before_us: int, max_per_client: int, max_total: int) -> None:
        p, s = pending, self.schema
        steps: tuple[tuple[str, tuple[object, ...]], ...] = (
            (f"DELETE FROM {s}.sign_in_pending WHERE created_us < %s", (not_before_us,)),
            (f"INSERT INTO {s}.sign_in_pending ({_PENDING}) VALUES (%s, %s, %s, %s, %s, %s)",
             (p.state_hash, p.nonce, p.code_verifier, p.created_us, p.binding_hash, p.client_hash)),
            (f"DELETE FROM {s}.sign_in_pending WHERE state_hash IN (SELECT state_hash FROM {s}.sign_in_pending "
             "WHERE client_hash = %s ORDER BY created_us DESC, state_hash OFFSET %s)", (p.client_hash, max_per_client)),
            (f"DELETE FROM {s}.sign_in_pending WHERE state_hash IN (SELECT state_hash FROM {s}.sign_in_pending "
             "ORDER BY created_us DESC, state_hash OFFSET %s)", (max_total,)),
        )  # fmt: skip

        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                for sql, args in steps:
                    conn.execute(sql.encode(), args)

        await self._db.run(run)

    async def take(self, state_hash: str, not_before_us: int) -> PendingSignIn | None:
        await self.prune(not_before_us)
        rows = await self._call(f"DELETE FROM {{s}}.sign_in_pending WHERE state_hash = %s RETURNING {_PENDING}",
                                state_hash)  # fmt: skip
        return PendingSignIn(*rows[0]) if rows else None

    async def prune(self, not_before_us: int) -> int:
        return len(await self._call("DELETE FROM {s}.sign_in_pending WHERE created_us < %s RETURNING 1", not_before_us))

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

    async def purge(self, *, seen_before_us: int, created_before_us: int) -> int:
        rows = await self._call("DELETE FROM {s}.citizen_session WHERE last_seen_us < %s OR created_us < %s "
                                "RETURNING 1", seen_before_us, created_before_us)  # fmt: skip
        return len(rows)

    async def close(self) -> None:
        self._db.close()
