"""Audit store fixtures: one contract suite over the fake, SQLite and PostgreSQL.

PostgreSQL cases are skipped, with the reason, when no server answers at
``PASSERELLE_TEST_PG_DSN`` (default: the local trust-auth ``test`` database);
with ``CI=true`` they fail instead, so CI cannot go green without them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.stores.audit_memory import InMemoryAuditLog
from adapters.stores.audit_postgres import PostgresAuditLog
from adapters.stores.audit_sqlite import SqliteAuditLog
from gateway.core.audit_chain import ROW_COLUMNS, Row, chain_hash, record_values, stored_of

PG_DSN = os.environ.get("PASSERELLE_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test")


@functools.cache
def postgres_unreachable() -> str:
    """Why PostgreSQL cannot be used, or "" when it can."""
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL at {PG_DSN!r}: {type(exc).__name__}: {str(exc).strip()[:200]}"
    return ""


def require_postgres() -> None:
    reason = postgres_unreachable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and PostgreSQL is required: {reason}")
        pytest.skip(reason)


def forge(row: Row, seq: int, prev_hash: str) -> Row:
    """A well-formed row a competent forger would write: another subject, a correct chain hash."""
    record = replace(stored_of(row).record, subject="forged-subject")
    return (seq, *record_values(record), prev_hash, chain_hash(prev_hash, seq, record))


@dataclass
class Harness:
    """A store under test plus raw access for tampering and for breaking writes."""

    kind: str
    store: Any
    execute: Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]  # raw SQL on the log's tables
    table: str = "audit_log"
    placeholder: str = "?"

    def sql(self, text: str) -> str:
        return text.replace("{t}", self.table).replace("?", self.placeholder)

    def rows(self) -> list[Row]:
        if self.kind == "memory":
            return sorted(self.store.rows)
        sql = self.sql(f"SELECT {', '.join(ROW_COLUMNS)} FROM {{t}} ORDER BY seq")
        return [tuple(r) for r in self.execute(sql, ())]

    def alter_subject(self, seq: int, subject: str) -> None:
        if self.kind == "memory":
            self._replace(seq, lambda r: (*r[:8], subject, *r[9:]))
        else:
            self.execute(self.sql("UPDATE {t} SET subject = ? WHERE seq = ?"), (subject, seq))

    def delete(self, seq: int) -> None:
        if self.kind == "memory":
            self.store.rows = [r for r in self.store.rows if r[0] != seq]
        else:
            self.execute(self.sql("DELETE FROM {t} WHERE seq = ?"), (seq,))

    def insert_after(self, seq: int) -> None:
        """Shift later records up by one and slip a forged, well-chained record in at ``seq + 1``."""
        rows = {r[0]: r for r in self.rows()}
        forged = forge(rows[seq + 1], seq + 1, rows[seq][-1])
        if self.kind == "memory":
            self.store.rows = [r if r[0] <= seq else (r[0] + 1, *r[1:]) for r in self.store.rows] + [forged]
            return
        self.execute(self.sql("UPDATE {t} SET seq = -(seq + 1) WHERE seq > ?"), (seq,))
        self.execute(self.sql("UPDATE {t} SET seq = -seq WHERE seq < 0"), ())
        marks = ", ".join([self.placeholder] * len(forged))
        self.execute(self.sql(f"INSERT INTO {{t}} ({', '.join(ROW_COLUMNS)}) VALUES ({marks})"), forged)

    def swap(self, a: int, b: int) -> None:
        """Records ``a`` and ``b`` change places (their seq numbers stay)."""
        if self.kind == "memory":
            rows = {r[0]: r for r in self.store.rows}
            rows[a], rows[b] = (a, *rows[b][1:]), (b, *rows[a][1:])
            self.store.rows = list(rows.values())
            return
        self.execute(self.sql("UPDATE {t} SET seq = -1 WHERE seq = ?"), (a,))
        self.execute(self.sql("UPDATE {t} SET seq = ? WHERE seq = ?"), (a, b))
        self.execute(self.sql("UPDATE {t} SET seq = ? WHERE seq = -1"), (b,))

    def _replace(self, seq: int, change: Callable[[Row], Row]) -> None:
        self.store.rows = [change(r) if r[0] == seq else r for r in self.store.rows]

    def break_writes(self) -> None:
        if self.kind == "memory":
            self.store.broken = True
        elif self.kind == "sqlite":
            self.execute(
                "CREATE TRIGGER fail_writes BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'x'); END",
                (),
            )
        else:
            s = self.table.split(".")[0]
            self.execute(
                f"CREATE FUNCTION {s}.fail_writes() RETURNS trigger LANGUAGE plpgsql "
                "AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$", ()
            )
            self.execute(
                f"CREATE TRIGGER fail_writes BEFORE INSERT ON {self.table} "
                f"FOR EACH ROW EXECUTE FUNCTION {s}.fail_writes()", ()
            )

    def repair_writes(self) -> None:
        if self.kind == "memory":
            self.store.broken = False
        elif self.kind == "sqlite":
            self.execute("DROP TRIGGER fail_writes", ())
        else:
            self.execute(f"DROP TRIGGER fail_writes ON {self.table}", ())


def _sqlite_execute(path: Path) -> Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
    def execute(sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("DROP TRIGGER IF EXISTS audit_log_append_only")  # an attacker would, too
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    return execute


def _pg_execute(schema: str) -> Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
    def execute(sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP TRIGGER IF EXISTS audit_log_append_only ON {schema}.audit_log")
            cur = conn.execute(sql.encode(), args)
            return cur.fetchall() if cur.description else []

    return execute


@pytest.fixture
def pg_schema() -> Any:
    """A fresh schema, dropped afterwards."""
    require_postgres()
    schema = f"audit_test_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


STORE_KINDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORE_KINDS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    kind = request.param
    if kind == "memory":
        h = Harness(kind, InMemoryAuditLog(), lambda sql, args: [])
    elif kind == "sqlite":
        path = tmp_path / "audit.db"
        h = Harness(kind, SqliteAuditLog(path), _sqlite_execute(path))
    else:
        schema = request.getfixturevalue("pg_schema")
        h = Harness(kind, PostgresAuditLog(PG_DSN, schema=schema), _pg_execute(schema),
                    table=f"{schema}.audit_log", placeholder="%s")  # fmt: skip
    await h.store.start()
    yield h
    await h.store.close()


#: The three backends of a store contract test; PostgreSQL skips with a reason (mandatory in CI).
BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextlib.asynccontextmanager
async def reopening(
    request: pytest.FixtureRequest,
    memory: Callable[[], Any],
    sqlite: Callable[[], Any],
    postgres: Callable[[str], Any],
) -> AsyncIterator[Callable[[], Any]]:
    """Opens the backend named by ``request.param`` on the same location at each call, as another process
    would (memory: the one store, it has one process only); closes every store opened, last first."""
    opened: list[Any] = []
    if request.param == "memory":
        only = memory()
        make: Callable[[], Any] = lambda: only  # noqa: E731
    elif request.param == "sqlite":
        make = sqlite
    else:
        schema: str = request.getfixturevalue("pg_schema")
        make = lambda: postgres(schema)  # noqa: E731

    def open_() -> Any:
        store = make()
        opened.append(store)
        return store

    try:
        yield open_
    finally:
        for store in reversed(opened):
            await store.close()
