"""The exchange log in one SQLite file: WAL, ``synchronous=FULL``, group commit.

One writer thread owns the write connection and commits each batch of queued
records in one transaction (see ``GroupCommitter``); reads use a second
connection. The chain head is read inside the write transaction, so even a
second process writing the same file keeps the chain whole.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from adapters.stores._sqlite import open_wal
from gateway.core.audit_chain import (
    ROW_COLUMNS,
    Anchor,
    Row,
    VerifyResult,
    stored_of,
    verify_rows,
)
from gateway.core.merkle import EMPTY_ROOT, Checkpoint, consistency_proof, frontier_push, inclusion_proof
from gateway.core.ports import AuditQuery
from gateway.core.signed_note import Cosignature
from gateway.core.types import AuditReceipt, AuditRecord, StoredAuditRecord

from ._audit_common import GroupCommitter, chain_batch, range_hasher

__all__ = ["MIGRATIONS", "SqliteAuditLog"]

T = TypeVar("T")

_COLS = ", ".join(ROW_COLUMNS)
_INSERT = f"INSERT INTO audit_log ({_COLS}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})"

MIGRATIONS: tuple[str, ...] = (
    # 1: the log, its head, checkpoints and the retention anchor
    """
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, kind TEXT NOT NULL, consumer TEXT NOT NULL,
        service TEXT NOT NULL, purpose TEXT NOT NULL, legal_basis TEXT NOT NULL,
        legal_reference TEXT NOT NULL, subject TEXT NOT NULL, consent_id TEXT NOT NULL,
        case_id TEXT NOT NULL, officer_id TEXT NOT NULL, request_id TEXT NOT NULL,
        trace_id TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT NOT NULL,
        latency_us INTEGER NOT NULL, protocol TEXT NOT NULL, ai_system TEXT NOT NULL,
        hidden_until_us INTEGER NOT NULL, hidden_reason TEXT NOT NULL,
        fields TEXT NOT NULL, extra TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
    ) STRICT;
    CREATE INDEX audit_log_subject ON audit_log (subject, seq);
    CREATE INDEX audit_log_consumer_time ON audit_log (consumer, time_us);
    CREATE INDEX audit_log_time ON audit_log (time_us);
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
    INSERT INTO audit_head VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
    CREATE TABLE audit_checkpoint (
        tree_size INTEGER PRIMARY KEY, root_hash BLOB NOT NULL, time_us INTEGER NOT NULL,
        signature BLOB NOT NULL, key_id TEXT NOT NULL
    ) STRICT;
    CREATE TABLE audit_anchor (
        id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL,
        frontier TEXT NOT NULL
    ) STRICT;
    """,
    # 2: C2SP checkpoints (the log's origin, Ed25519 note signatures) and witness cosignatures
    """
    ALTER TABLE audit_checkpoint ADD COLUMN origin TEXT NOT NULL DEFAULT '';
    CREATE TABLE audit_cosignature (
        tree_size INTEGER NOT NULL, witness TEXT NOT NULL, key_id BLOB NOT NULL, timestamp INTEGER NOT NULL,
        signature BLOB NOT NULL, PRIMARY KEY (tree_size, witness)
    ) STRICT;
    """,
)


#: Page cache of the connection ``iter_rows`` scans the log on, in KiB (SQLite's default is 2,000 KiB).
_SCAN_CACHE_KIB = 64


def _connect(path: str) -> sqlite3.Connection:
    return open_wal(path, isolation_level=None, timeout=30)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations not yet applied; return the schema version."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
        done = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        for version, step in enumerate(MIGRATIONS[done:], start=done + 1):
            for statement in _statements(step):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements; ``executescript`` would commit on its own."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""


def _where(q: AuditQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = ["seq > ?"]
    args: list[Any] = [q.after_seq]
    for column, value in (("subject", q.subject), ("consumer", q.consumer), ("purpose", q.purpose)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if q.since_us is not None:
        clauses.append("time_us >= ?")
        args.append(q.since_us)
    if q.until_us is not None:
        clauses.append("time_us < ?")
        args.append(q.until_us)
    return " AND ".join(clauses), args


class SqliteAuditLog:
    """``AuditLog`` and ``AuditReader`` over one SQLite file."""

    def __init__(self, path: str | Path, *, max_batch: int = 2048) -> None:
        self.path = str(path)
        self._writer = GroupCommitter(self._commit, max_batch=max_batch)
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._rlock = threading.Lock()

    @property
    def writer(self) -> GroupCommitter:
        """The group-commit writer (queue depth and commit timings for telemetry)."""
        return self._writer

    @property
    def commits(self) -> int:
        """Write transactions committed so far (fewer than appends when batching works)."""
        return self._writer.commits

    async def start(self) -> None:
        def open_all() -> None:
            self._wconn = _connect(self.path)
            migrate(self._wconn)
            self._rconn = _connect(self.path)

        await asyncio.to_thread(open_all)
        self._writer.start(f"audit-writer:{self.path}")

    async def close(self) -> None:
        await self._writer.stop()
        for conn in (self._wconn, self._rconn):
            if conn is not None:
                conn.close()

    async def append(self, record: AuditRecord) -> AuditReceipt:
        return await self._writer.submit(record)

    async def append_all(self, records: Sequence[AuditRecord]) -> list[AuditReceipt]:
        """Submitted together, committed in one transaction (``GroupCommitter.append_all``)."""
        return await self._writer.append_all(records)

    def _commit(self, records: list[AuditRecord]) -> list[AuditReceipt]:
        conn = self._wconn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            head_seq, head_hash = conn.execute("SELECT seq, hash FROM audit_head").fetchone()
            rows = chain_batch(head_seq, head_hash, records)
            conn.executemany(_INSERT, rows)
            conn.execute("UPDATE audit_head SET seq = ?, hash = ?", (rows[-1][0], rows[-1][-1]))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return [AuditReceipt(row[0], row[-1]) for row in rows]

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            assert self._rconn is not None
            with self._rlock:
                return fn(self._rconn)

        return await asyncio.to_thread(run)

    async def query(self, q: AuditQuery) -> Sequence[StoredAuditRecord]:
        where, args = _where(q)
        sql = f"SELECT {_COLS} FROM audit_log WHERE {where} ORDER BY seq LIMIT ?"
        rows = await self._read(lambda c: c.execute(sql, [*args, q.limit]).fetchall())
        return [stored_of(row) for row in rows]

    async def get(self, seq: int) -> StoredAuditRecord | None:
        sql = f"SELECT {_COLS} FROM audit_log WHERE seq = ?"
        row = await self._read(lambda c: c.execute(sql, (seq,)).fetchone())
        return None if row is None else stored_of(row)

    def iter_rows(self, batch: int = 10_000, *, after_seq: int = 0) -> Iterator[Row]:
        """All rows in seq order, read in pages on a connection of their own.

        Its page cache is kept small (``_SCAN_CACHE_KIB``): a scan reads each page once, and the
        default 2 MB cache, filled and freed at every checkpoint by a worker thread, only left free
        memory behind in that thread's malloc arena.
        """
        conn = _connect(self.path)
        conn.execute(f"PRAGMA cache_size = -{_SCAN_CACHE_KIB}")
        try:
            while True:
                page = conn.execute(
                    f"SELECT {_COLS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, batch)
                ).fetchall()
                yield from page
                if len(page) < batch:
                    return
                after_seq = page[-1][0]
        finally:
            conn.close()

    async def anchor(self) -> Anchor:
        row = await self._read(lambda c: c.execute("SELECT seq, hash, frontier FROM audit_anchor").fetchone())
        if row is None:
            return Anchor()
        return Anchor(row[0], row[1], tuple(bytes.fromhex(h) for h in json.loads(row[2])))

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        cp = checkpoint

        def insert(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO audit_checkpoint VALUES (?, ?, ?, ?, ?, ?)",
                (cp.tree_size, cp.root_hash, cp.time_us, cp.signature, cp.key_id, cp.origin),
            )

        await self._read(insert)

    async def add_cosignature(self, tree_size: int, cosignature: Cosignature) -> None:
        """Keep a witness's cosignature of checkpoint ``tree_size`` (the newest per witness and size)."""
        c = cosignature
        sql = ("INSERT INTO audit_cosignature VALUES (?, ?, ?, ?, ?) ON CONFLICT (tree_size, witness) DO UPDATE "
               "SET key_id = excluded.key_id, timestamp = excluded.timestamp, signature = excluded.signature "
               "WHERE excluded.timestamp > audit_cosignature.timestamp")  # fmt: skip
        await self._read(lambda conn: conn.execute(sql, (tree_size, c.witness, c.key_id, c.timestamp, c.signature)))

    async def cosignatures(self, tree_size: int) -> list[Cosignature]:
        sql = "SELECT witness, key_id, timestamp, signature FROM audit_cosignature WHERE tree_size = ? ORDER BY witness"
        rows = await self._read(lambda c: c.execute(sql, (tree_size,)).fetchall())
        return [Cosignature(*row) for row in rows]

    async def checkpoints(self) -> list[Checkpoint]:
        sql = "SELECT * FROM audit_checkpoint ORDER BY tree_size"
        rows = await self._read(lambda c: c.execute(sql).fetchall())
        return [Checkpoint(*row) for row in rows]

    async def latest_checkpoint(self) -> Checkpoint | None:
        cps = await self._read(
            lambda c: c.execute("SELECT * FROM audit_checkpoint ORDER BY tree_size DESC LIMIT 1").fetchall()
        )
        return Checkpoint(*cps[0]) if cps else None

    async def _hashes(self, after_seq: int, upto: int) -> list[str]:
        sql = "SELECT hash FROM audit_log WHERE seq > ? AND seq <= ? ORDER BY seq"
        rows = await self._read(lambda c: c.execute(sql, (after_seq, upto)).fetchall())
        return [row[0] for row in rows]

    async def chain_head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last committed record (``(0, GENESIS_HASH)`` when empty)."""
        row = await self._read(lambda c: c.execute("SELECT seq, hash FROM audit_head").fetchone())
        return int(row[0]), str(row[1])

    async def tree_head(self, tree_size: int | None = None) -> tuple[int, bytes]:
        """``(size, root)`` of the Merkle tree over the first ``tree_size`` records (default: all)."""
        anchor = await self.anchor()
        if tree_size is None:
            head: int = await self._read(lambda c: c.execute("SELECT seq FROM audit_head").fetchone()[0])
            tree_size = head
        hasher = range_hasher(anchor, await self._hashes(anchor.seq, tree_size))
        return hasher.size, hasher(0, hasher.size) if hasher.size else EMPTY_ROOT

    async def inclusion_proof(self, seq: int, tree_size: int) -> list[bytes]:
        """RFC 9162 audit path of record ``seq`` in the tree of ``tree_size`` records."""
        anchor = await self.anchor()
        hasher = range_hasher(anchor, await self._hashes(anchor.seq, tree_size))
        return inclusion_proof(seq - 1, tree_size, hasher)

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof between two tree sizes; ``ValueError`` when out of range or purged."""
        anchor = await self.anchor()
        hasher = range_hasher(anchor, await self._hashes(anchor.seq, new_size))
        return consistency_proof(old_size, new_size, hasher)

    async def purge_before(self, time_us: int) -> int:
        """Delete the oldest records, up to the first one at or after ``time_us``; return how many.

        Only a prefix of the chain goes, so the rest stays verifiable from the new
        anchor: the last purged record's seq, hash and Merkle frontier.
        """
        old = await self.anchor()

        def purge(c: sqlite3.Connection) -> int:
            c.execute("BEGIN IMMEDIATE")
            try:
                first_kept = c.execute(
                    "SELECT MIN(seq) FROM audit_log WHERE time_us >= ?", (time_us,)
                ).fetchone()[0]
                last = (c.execute("SELECT seq FROM audit_head").fetchone()[0] if first_kept is None
                        else first_kept - 1)  # fmt: skip
                hashes = c.execute(
                    "SELECT seq, hash FROM audit_log WHERE seq > ? AND seq <= ? ORDER BY seq", (old.seq, last)
                ).fetchall()
                if not hashes:
                    c.execute("ROLLBACK")
                    return 0
                frontier = list(old.frontier)
                for seq, digest in hashes:
                    frontier_push(frontier, seq - 1, bytes.fromhex(digest))
                c.execute(
                    "INSERT OR REPLACE INTO audit_anchor VALUES (1, ?, ?, ?)",
                    (last, hashes[-1][1], json.dumps([f.hex() for f in frontier])),
                )
                c.execute("DELETE FROM audit_log WHERE seq <= ?", (last,))
                c.execute("COMMIT")
                return len(hashes)
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise

        return await self._read(purge)

    async def verify(self, *, checkpoint_valid: Callable[[Checkpoint], bool] | None = None) -> VerifyResult:
        """Check the whole kept chain and every checkpoint past the anchor."""
        anchor, cps = await self.anchor(), await self.checkpoints()
        return await asyncio.to_thread(
            lambda: verify_rows(self.iter_rows(), cps, anchor=anchor, checkpoint_valid=checkpoint_valid)
        )

    async def healthy(self) -> bool:
        if not self._writer.alive:
            return False
        try:
            await self._read(lambda c: c.execute("SELECT 1").fetchone())
        except sqlite3.Error:
            return False
        return True

