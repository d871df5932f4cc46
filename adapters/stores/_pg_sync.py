"""A synchronous psycopg connection used from worker threads, with schema migrations.

For the small PostgreSQL stores that are read off the hot path (revocations, the quota board): one
connection, serialised by a lock, reopened after the server went away, migrated on first use.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg

__all__ = ["ThreadedPg", "check_schema", "pg_migrate"]

T = TypeVar("T")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    return schema


def pg_migrate(conn: psycopg.Connection[Any], schema: str, steps: Sequence[str]) -> int:
    """Apply the steps not yet applied, under an advisory lock (as ``PostgresAuditLog.migrate``)."""
    s = check_schema(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"passerelle-migrate:{s}",))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}".encode())
        conn.execute(f"CREATE TABLE IF NOT EXISTS {s}.schema_version (version int PRIMARY KEY)".encode())
        row = conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {s}.schema_version".encode()).fetchone()
        done = int(row[0]) if row else 0
        for version, step in enumerate(steps[done:], start=done + 1):
            conn.execute(step.replace("{s}", s).encode())
            conn.execute(f"INSERT INTO {s}.schema_version VALUES (%s)".encode(), (version,))
    return len(steps)


class ThreadedPg:
    def __init__(self, dsn: str, schema: str, migrations: Sequence[str], *, connect_timeout: int = 5) -> None:
        self.dsn, self.schema = dsn, check_schema(schema)
        self._migrations = migrations
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:  # first use, or lost with the server
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=self._connect_timeout)
            pg_migrate(conn, self.schema, self._migrations)
            self._conn = conn
        return self._conn

    def run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> Awaitable[T]:
        """Run ``fn`` with the connection in a worker thread, one at a time."""

        def locked() -> T:
            with self._lock:
                return fn(self.connection())

        return asyncio.to_thread(locked)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
