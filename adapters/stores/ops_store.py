"""Where operational records and manual submissions are kept: memory, SQLite, PostgreSQL.

The SQL stores buffer records in memory (at most ``buffer`` of them; the oldest
are dropped and counted when a writer falls behind) and write them in batches
from one background thread, so an exchange never waits for ops I/O. Reads flush
the buffer first, so a query sees every exchange already answered.
"""

from __future__ import annotations

import asyncio
import collections
import operator
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import astuple, fields, replace
from pathlib import Path
from typing import Any

from adapters.stores._sqlite import open_wal
from gateway.core.ops_records import ManualSubmission, OpsQuery, OpsRecord, OpsSummary, summarise

__all__ = ["InMemoryOpsStore", "PostgresOpsStore", "SqliteOpsStore", "open_ops_store"]

_COLUMNS = [f.name for f in fields(OpsRecord) if f.name != "id"]
_MANUAL = ["time_us", "consumer", "procedure", "documents", "case_id"]
#: A record's column values, in ``_COLUMNS`` order (``dataclasses.astuple`` deep-copies: too dear per exchange).
_OPS_ROW = operator.attrgetter(*_COLUMNS)


def _matches(r: OpsRecord, q: OpsQuery) -> bool:
    return (
        (q.since_us is None or r.request_in_us >= q.since_us)
        and (q.until_us is None or r.request_in_us < q.until_us)
        and q.consumer in (None, r.consumer)
        and q.registry in (None, r.registry)
        and q.service in (None, r.service)
        and q.succeeded in (None, r.succeeded)
    )


class InMemoryOpsStore:
    """The same behaviour in a list, for unit tests."""

    def __init__(self) -> None:
        self.records: list[OpsRecord] = []
        self.manual: list[ManualSubmission] = []
        self.dropped = 0

    def record(self, record: OpsRecord) -> None:
        self.records.append(replace(record, id=len(self.records) + 1))

    async def query(self, q: OpsQuery) -> Sequence[OpsRecord]:
        return [r for r in self.records if r.id > q.after_id and _matches(r, q)][: q.limit]

    async def summary(self, q: OpsQuery) -> Sequence[OpsSummary]:
        return summarise(r for r in self.records if _matches(r, q))

    async def add(self, m: ManualSubmission) -> None:
        self.manual.append(m)

    async def totals(self, since_us: int, until_us: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.manual:
            if since_us <= m.time_us < until_us:
                out[m.consumer] = out.get(m.consumer, 0) + m.documents
        return out

    @property
    def queue_depth(self) -> int:
        return 0

    async def close(self) -> None:
        return None


class _SqlOpsStore:
    """Buffer, writer thread and queries; subclasses give the connection and the SQL dialect."""

    _param = "?"
    _schema: tuple[str, ...] = ()

    def __init__(self, *, buffer: int = 20_000, flush_every_s: float = 0.2) -> None:
        self._pending: collections.deque[OpsRecord] = collections.deque(maxlen=buffer)
        self._lock = threading.Lock()  # one connection, used by the writer and by reads
        self._wake = threading.Event()
        self._flush_every = flush_every_s
        self._conn: Any = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dropped = 0

    def _connect(self) -> Any:
        raise NotImplementedError

    async def start(self) -> None:
        def open_and_migrate() -> None:
            self._conn = self._connect()
            with self._lock:
                for statement in self._schema:
                    self._conn.execute(statement)
                self._commit()

        await asyncio.to_thread(open_and_migrate)
        self._thread = threading.Thread(target=self._run, name="ops-writer", daemon=True)
        self._thread.start()

    def _commit(self) -> None:
        self._conn.commit()

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def record(self, record: OpsRecord) -> None:
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1  # deque(maxlen) drops the oldest itself
        self._pending.append(record)
        if len(self._pending) >= 512:
            self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._flush_every)
            self._wake.clear()
            try:
                self._flush()
            except Exception:  # best effort: a failed batch is lost, the writer goes on
                self.dropped += 1

    def _flush(self) -> None:
        with self._lock:
            batch = []
            while self._pending:
                batch.append(self._pending.popleft())
            if not batch:
                return
            marks = ", ".join([self._param] * len(_COLUMNS))
            sql = f"INSERT INTO ops_exchange ({', '.join(_COLUMNS)}) VALUES ({marks})"
            try:
                self._executemany(sql, [_OPS_ROW(r) for r in batch])
                self._commit()
            except Exception:
                self._rollback()
                self.dropped += len(batch)
                raise

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self._conn.executemany(sql, rows)

    def _rollback(self) -> None:
        self._conn.rollback()

    def _where(self, q: OpsQuery, *, paged: bool) -> tuple[str, list[Any]]:
        p = self._param
        clauses: list[str] = ["1 = 1"]
        args: list[Any] = []
        if paged:
            clauses.append(f"id > {p}")
            args.append(q.after_id)
        for column, value in (
            ("consumer", q.consumer),
            ("registry", q.registry),
            ("service", q.service),
            ("succeeded", q.succeeded),
        ):
            if value is not None:
                clauses.append(f"{column} = {p}")
                args.append(value)
        if q.since_us is not None:
            clauses.append(f"request_in_us >= {p}")
            args.append(q.since_us)
        if q.until_us is not None:
            clauses.append(f"request_in_us < {p}")
            args.append(q.until_us)
        return " AND ".join(clauses), args

    async def _read(self, fn: Callable[[], Any]) -> Any:
        def run() -> Any:
            self._flush()
            with self._lock:
                try:
                    return fn()
                finally:
                    self._commit()  # end the read transaction (PostgreSQL)

        return await asyncio.to_thread(run)

    async def query(self, q: OpsQuery) -> Sequence[OpsRecord]:
        where, args = self._where(q, paged=True)
        sql = f"SELECT {', '.join(_COLUMNS)}, id FROM ops_exchange WHERE {where} ORDER BY id LIMIT {self._param}"
        rows = await self._read(lambda: self._conn.execute(sql, [*args, q.limit]).fetchall())
        return [_record(row) for row in rows]

    async def summary(self, q: OpsQuery) -> Sequence[OpsSummary]:
        where, args = self._where(q, paged=False)
        sql = f"SELECT {', '.join(_COLUMNS)}, id FROM ops_exchange WHERE {where}"

        def aggregate() -> list[OpsSummary]:
            cursor = self._conn.execute(sql, args)
            return summarise(_record(row) for page in iter(lambda: cursor.fetchmany(5000), []) for row in page)

        return await self._read(aggregate)  # type: ignore[no-any-return]

    async def add(self, m: ManualSubmission) -> None:
        p = self._param
        sql = f"INSERT INTO manual_submission ({', '.join(_MANUAL)}) VALUES ({', '.join([p] * len(_MANUAL))})"
        await self._read(lambda: self._conn.execute(sql, astuple(m)))

    async def totals(self, since_us: int, until_us: int) -> dict[str, int]:
        p = self._param
        sql = (
            f"SELECT consumer, SUM(documents) FROM manual_submission WHERE time_us >= {p} AND time_us < {p} "
            "GROUP BY consumer"
        )
        rows = await self._read(lambda: self._conn.execute(sql, (since_us, until_us)).fetchall())
        return {consumer: int(total) for consumer, total in rows}

    async def close(self) -> None:
        if self._thread is None or self._closed:
            return
        self._closed = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._flush)
        with self._lock:
            self._conn.close()


def _record(row: Sequence[Any]) -> OpsRecord:
    values = list(row)
    values[_COLUMNS.index("succeeded")] = bool(values[_COLUMNS.index("succeeded")])
    return OpsRecord(*values)


_COLUMN_SQL = """
    request_in_us BIGINT NOT NULL, request_out_us BIGINT NOT NULL, response_in_us BIGINT NOT NULL,
    response_out_us BIGINT NOT NULL, consumer TEXT NOT NULL, provider TEXT NOT NULL, registry TEXT NOT NULL,
    service TEXT NOT NULL, service_version TEXT NOT NULL, protocol TEXT NOT NULL, purpose TEXT NOT NULL,
    request_id TEXT NOT NULL, trace_id TEXT NOT NULL, request_bytes BIGINT NOT NULL,
    response_bytes BIGINT NOT NULL, registry_response_bytes BIGINT NOT NULL, succeeded BOOLEAN NOT NULL,
    fault_code TEXT NOT NULL"""
_MANUAL_SQL = """
    time_us BIGINT NOT NULL, consumer TEXT NOT NULL, procedure TEXT NOT NULL, documents INTEGER NOT NULL,
    case_id TEXT NOT NULL"""


class SqliteOpsStore(_SqlOpsStore):
    """One SQLite file (WAL, ``synchronous=NORMAL``: ops records are best effort, not evidence)."""

    _schema = (
        f"CREATE TABLE IF NOT EXISTS ops_exchange (id INTEGER PRIMARY KEY, {_COLUMN_SQL})",
        "CREATE INDEX IF NOT EXISTS ops_exchange_time ON ops_exchange (request_in_us)",
        "CREATE INDEX IF NOT EXISTS ops_exchange_registry ON ops_exchange (registry, consumer, request_in_us)",
        f"CREATE TABLE IF NOT EXISTS manual_submission (id INTEGER PRIMARY KEY, {_MANUAL_SQL})",
        "CREATE INDEX IF NOT EXISTS manual_submission_time ON manual_submission (time_us)",
    )

    def __init__(self, path: str | Path, **kw: Any) -> None:
        super().__init__(**kw)
        self.path = str(path)

    def _connect(self) -> sqlite3.Connection:
        return open_wal(self.path, timeout=30, synchronous="NORMAL")


class PostgresOpsStore(_SqlOpsStore):
    """Tables in their own schema of the audit store's database."""

    _param = "%s"

    def __init__(self, dsn: str, *, schema: str = "passerelle_ops", **kw: Any) -> None:
        super().__init__(**kw)
        self._dsn = dsn
        self._schema = (
            f"CREATE SCHEMA IF NOT EXISTS {schema}",
            f"CREATE TABLE IF NOT EXISTS {schema}.ops_exchange (id BIGSERIAL PRIMARY KEY, {_COLUMN_SQL})",
            f"CREATE INDEX IF NOT EXISTS ops_exchange_time ON {schema}.ops_exchange (request_in_us)",
            f"CREATE INDEX IF NOT EXISTS ops_exchange_registry ON {schema}.ops_exchange "
            "(registry, consumer, request_in_us)",
            f"CREATE TABLE IF NOT EXISTS {schema}.manual_submission (id BIGSERIAL PRIMARY KEY, {_MANUAL_SQL})",
            f"CREATE INDEX IF NOT EXISTS manual_submission_time ON {schema}.manual_submission (time_us)",
        )
        self._search_path = schema

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self._dsn, connect_timeout=10)
        conn.execute(f"SET search_path TO {self._search_path}")
        conn.commit()
        return conn

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(sql, rows)


def open_ops_store(audit_target: str, audit_path: Callable[[str], Path]) -> SqliteOpsStore | PostgresOpsStore:
    """Next to the audit log: the same PostgreSQL database, or ``ops.db`` beside the audit SQLite file."""
    if audit_target.startswith(("postgresql://", "postgres://")):
        return PostgresOpsStore(audit_target)
    return SqliteOpsStore(audit_path(audit_target.removeprefix("sqlite:")).parent / "ops.db")
