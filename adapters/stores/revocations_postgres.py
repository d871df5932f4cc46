"""Revocations in PostgreSQL: durable, and shared by every gateway process (and pod) on one server.

Same behaviour as ``SqliteRevocationStore``. ``changed()`` reads a single
version counter that every ``add``/``remove`` bumps in the same transaction, so
the sync task (one cheap query a second) reloads only when something changed.
Schema migrations run under a transaction-scoped advisory lock, so many
processes starting at once apply each step once. Everything lives in one
schema (``schema=``), so tests can use a throw-away one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar

import psycopg

from adapters.stores._pg_sync import ThreadedPg
from gateway.core.revocation import Revocation

__all__ = ["MIGRATIONS", "PostgresRevocationStore"]

T = TypeVar("T")

# Each step is formatted with {s}, the schema name (checked against _SCHEMA_NAME).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {s}.revocations (
        kind text NOT NULL, value text NOT NULL, reason text NOT NULL DEFAULT '',
        created_us bigint NOT NULL, until_us bigint NOT NULL DEFAULT 0, by text NOT NULL DEFAULT '',
        PRIMARY KEY (kind, value)
    );
    CREATE TABLE {s}.revocations_version (id int PRIMARY KEY CHECK (id = 1), version bigint NOT NULL);
    INSERT INTO {s}.revocations_version VALUES (1, 0);
    """,
)


class PostgresRevocationStore:
    """``RevocationStore`` over PostgreSQL (psycopg 3; one connection used from a worker thread)."""

    def __init__(self, dsn: str, *, schema: str = "passerelle_revocations") -> None:
        self._db = ThreadedPg(dsn, schema, MIGRATIONS, connect_timeout=5)
        self.dsn, self.schema = dsn, self._db.schema
        self._run = self._db.run
        self._version = -1

    async def add(self, r: Revocation) -> None:
        s = self.schema

        def add(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(
                    f"INSERT INTO {s}.revocations (kind, value, reason, created_us, until_us, by) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (kind, value) DO UPDATE SET "
                    "reason = EXCLUDED.reason, created_us = EXCLUDED.created_us, until_us = EXCLUDED.until_us, "
                    "by = EXCLUDED.by".encode(),
                    (r.kind, r.value, r.reason, r.created_us, r.until_us, r.by),
                )
                conn.execute(f"UPDATE {s}.revocations_version SET version = version + 1 WHERE id = 1".encode())

        await self._run(add)

    async def remove(self, kind: str, value: str) -> bool:
        s = self.schema

        def remove(conn: psycopg.Connection[Any]) -> bool:
            with conn.transaction():
                cur = conn.execute(f"DELETE FROM {s}.revocations WHERE kind = %s AND value = %s".encode(),
                                   (kind, value))  # fmt: skip
                if cur.rowcount > 0:
                    conn.execute(f"UPDATE {s}.revocations_version SET version = version + 1 WHERE id = 1".encode())
                return cur.rowcount > 0

        return bool(await self._run(remove))

    async def active(self, now_us: int) -> Sequence[Revocation]:
        sql = (f"SELECT kind, value, reason, created_us, until_us, by FROM {self.schema}.revocations "
               "WHERE until_us = 0 OR until_us > %s ORDER BY created_us, kind, value").encode()  # fmt: skip
        rows = await self._run(lambda c: c.execute(sql, (now_us,)).fetchall())
        return [Revocation(*row) for row in rows]

    async def changed(self) -> bool:
        sql = f"SELECT version FROM {self.schema}.revocations_version WHERE id = 1".encode()

        def changed(conn: psycopg.Connection[Any]) -> bool:
            row = conn.execute(sql).fetchone()
            version = int(row[0]) if row else 0
            moved, self._version = version != self._version, version
            return moved

        return bool(await self._run(changed))

    async def close(self) -> None:
        await asyncio.to_thread(self._db.close)
