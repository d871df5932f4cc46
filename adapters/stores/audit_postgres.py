"""The exchange log in PostgreSQL, safe with several gateway processes writing at once.

Each process has one writer thread (group commit, see ``GroupCommitter``). A
batch's transaction first locks the single ``audit_head`` row (``FOR UPDATE``),
chains its records after the head, COPYs them in and moves the head: seq is
gap-free and the chain is global across processes. All tables live in one
schema (``schema=``), so tests can use a throw-away schema.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg

from gateway.core.audit_chain import ROW_COLUMNS, Anchor, Row, VerifyResult, stored_of, verify_rows
from gateway.core.merkle import EMPTY_ROOT, Checkpoint, consistency_proof, frontier_push, inclusion_proof
from gateway.core.ports import AuditQuery
from gateway.core.signed_note import Cosignature
from gateway.core.types import AuditReceipt, AuditRecord, StoredAuditRecord

from ._audit_common import GroupCommitter, chain_batch, range_hasher

__all__ = ["MIGRATIONS", "PostgresAuditLog"]

T = TypeVar("T")
_COLS = ", ".join(ROW_COLUMNS)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Each step is formatted with {s}, the schema name (checked against _SCHEMA_NAME).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {s}.audit_log (
        seq bigint PRIMARY KEY, time_us bigint NOT NULL, kind text NOT NULL, consumer text NOT NULL,
        service text NOT NULL, purpose text NOT NULL, legal_basis text NOT NULL,
        legal_reference text NOT NULL, subject text NOT NULL, consent_id text NOT NULL,
        case_id text NOT NULL, officer_id text NOT NULL, request_id text NOT NULL,
        trace_id text NOT NULL, outcome text NOT NULL, reason text NOT NULL,
        latency_us bigint NOT NULL, protocol text NOT NULL, ai_system text NOT NULL,
        hidden_until_us bigint NOT NULL, hidden_reason text NOT NULL,
        fields text NOT NULL, extra text NOT NULL, prev_hash text NOT NULL, hash text NOT NULL
    );
    CREATE INDEX audit_log_subject ON {s}.audit_log (subject, seq);
    CREATE INDEX audit_log_consumer_time ON {s}.audit_log (consumer, time_us);
    CREATE INDEX audit_log_time ON {s}.audit_log (time_us);
    CREATE FUNCTION {s}.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON {s}.audit_log
        FOR EACH ROW EXECUTE FUNCTION {s}.audit_log_append_only();
    CREATE TABLE {s}.audit_head (id int PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL, hash text NOT NULL);
    INSERT INTO {s}.audit_head VALUES (1, 0, repeat('0', 64));
    CREATE TABLE {s}.audit_checkpoint (
        tree_size bigint PRIMARY KEY, root_hash bytea NOT NULL, time_us bigint NOT NULL,
        signature bytea NOT NULL, key_id text NOT NULL
    );
    CREATE TABLE {s}.audit_anchor (
        id int PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL, hash text NOT NULL, frontier text NOT NULL
    );
    """,
    # 2: C2SP checkpoints (the log's origin, Ed25519 note signatures) and witness cosignatures
    """
    ALTER TABLE {s}.audit_checkpoint ADD COLUMN origin text NOT NULL DEFAULT '';
    CREATE TABLE {s}.audit_cosignature (
        tree_size bigint NOT NULL, witness text NOT NULL, key_id bytea NOT NULL, timestamp bigint NOT NULL,
        signature bytea NOT NULL, PRIMARY KEY (tree_size, witness)
    );
    """,
)


def _where(q: AuditQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = ["seq > %s"]
    args: list[Any] = [q.after_seq]
    for column, value in (("subject", q.subject), ("consumer", q.consumer), ("purpose", q.purpose)):
        if value is not None:
            clauses.append(f"{column} = %s")
            args.append(value)
    if q.since_us is not None:
        clauses.append("time_us >= %s")
        args.append(q.since_us)
    if q.until_us is not None:
        clauses.append("time_us < %s")
        args.append(q.until_us)
    return " AND ".join(clauses), args


class PostgresAuditLog:
    """``AuditLog`` and ``AuditReader`` over PostgreSQL (psycopg 3)."""

    def __init__(self, dsn: str, *, schema: str = "passerelle_audit", max_batch: int = 4096) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"not a plain schema name: {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self._writer = GroupCommitter(self._commit, max_batch=max_batch)
        self._wconn: psycopg.Connection[Any] | None = None
        self._rconn: psycopg.Connection[Any] | None = None
        self._rlock = threading.Lock()

    @property
    def writer(self) -> GroupCommitter:
        """The group-commit writer (queue depth and commit timings for telemetry)."""
        return self._writer

    @property
    def commits(self) -> int:
        """Write transactions committed so far (fewer than appends when batching works)."""
        return self._writer.commits

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True)

    def migrate(self, conn: psycopg.Connection[Any]) -> int:
        """Apply the migrations not yet applied; return the schema version."""
        s = self.schema
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"passerelle-migrate:{s}",))
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {s}.schema_version (version int PRIMARY KEY)")
            row = conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {s}.schema_version").fetchone()
            done = row[0] if row else 0
            for version, step in enumerate(MIGRATIONS[done:], start=done + 1):
                conn.execute(step.replace("{s}", s).encode())
                conn.execute(f"INSERT INTO {s}.schema_version VALUES (%s)", (version,))
        return len(MIGRATIONS)

    async def start(self) -> None:
        def open_all() -> None:
            self._wconn = self._connect()
            self.migrate(self._wconn)
            self._rconn = self._connect()

        await asyncio.to_thread(open_all)
        self._writer.start(f"audit-writer:{self.schema}")

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
        if self._wconn is None or self._wconn.closed:  # lost with the server: try a fresh one
            self._wconn = self._connect()
        conn, s = self._wconn, self.schema
        with conn.transaction():
            head = conn.execute(f"SELECT seq, hash FROM {s}.audit_head WHERE id = 1 FOR UPDATE").fetchone()
            assert head is not None
            rows = chain_batch(head[0], head[1], records)
            with conn.cursor().copy(f"COPY {s}.audit_log ({_COLS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            last = rows[-1]
            conn.execute(f"UPDATE {s}.audit_head SET seq = %s, hash = %s WHERE id = 1", (last[0], last[-1]))
        return [AuditReceipt(row[0], row[-1]) for row in rows]

    async def _read(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        def run() -> T:
            with self._rlock:
                if self._rconn is None or self._rconn.closed:
                    self._rconn = self._connect()
                return fn(self._rconn)

        return await asyncio.to_thread(run)

    async def query(self, q: AuditQuery) -> Sequence[StoredAuditRecord]:
        where, args = _where(q)
        sql = f"SELECT {_COLS} FROM {self.schema}.audit_log WHERE {where} ORDER BY seq LIMIT %s"
        rows = await self._read(lambda c: c.execute(sql.encode(), [*args, q.limit]).fetchall())
        return [stored_of(row) for row in rows]

    async def get(self, seq: int) -> StoredAuditRecord | None:
        sql = f"SELECT {_COLS} FROM {self.schema}.audit_log WHERE seq = %s"
        row = await self._read(lambda c: c.execute(sql.encode(), (seq,)).fetchone())
        return None if row is None else stored_of(row)

    def iter_rows(self, batch: int = 10_000, *, after_seq: int = 0) -> Iterator[Row]:
        """All rows in seq order, read in pages on a connection of their own."""
        sql = f"SELECT {_COLS} FROM {self.schema}.audit_log WHERE seq > %s ORDER BY seq LIMIT %s".encode()
        with self._connect() as conn:
            while True:
                page = conn.execute(sql, (after_seq, batch)).fetchall()
                yield from page
                if len(page) < batch:
                    return
                after_seq = page[-1][0]

    async def anchor(self) -> Anchor:
        sql = f"SELECT seq, hash, frontier FROM {self.schema}.audit_anchor".encode()
        row = await self._read(lambda c: c.execute(sql).fetchone())
        if row is None:
            return Anchor()
        return Anchor(row[0], row[1], tuple(bytes.fromhex(h) for h in json.loads(row[2])))

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        cp = checkpoint
        sql = f"INSERT INTO {self.schema}.audit_checkpoint VALUES (%s, %s, %s, %s, %s, %s)".encode()
        args = (cp.tree_size, cp.root_hash, cp.time_us, cp.signature, cp.key_id, cp.origin)
        await self._read(lambda c: c.execute(sql, args))

    async def checkpoints(self) -> list[Checkpoint]:
        sql = (f"SELECT tree_size, root_hash, time_us, signature, key_id, origin FROM {self.schema}.audit_checkpoint "
               "ORDER BY tree_size").encode()  # fmt: skip
        rows = await self._read(lambda c: c.execute(sql).fetchall())
        return [Checkpoint(r[0], bytes(r[1]), r[2], bytes(r[3]), r[4], r[5]) for r in rows]

    async def add_cosignature(self, tree_size: int, cosignature: Cosignature) -> None:
        """Keep a witness's cosignature of checkpoint ``tree_size`` (the newest per witness and size)."""
        c, t = cosignature, f"{self.schema}.audit_cosignature"
        sql = (f"INSERT INTO {t} VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tree_size, witness) DO UPDATE "
               "SET key_id = excluded.key_id, timestamp = excluded.timestamp, signature = excluded.signature "
               f"WHERE excluded.timestamp > {t}.timestamp").encode()  # fmt: skip
        args = (tree_size, c.witness, c.key_id, c.timestamp, c.signature)
        await self._read(lambda conn: conn.execute(sql, args))

    async def cosignatures(self, tree_size: int) -> list[Cosignature]:
        sql = (f"SELECT witness, key_id, timestamp, signature FROM {self.schema}.audit_cosignature "
               "WHERE tree_size = %s ORDER BY witness").encode()  # fmt: skip
        rows = await self._read(lambda c: c.execute(sql, (tree_size,)).fetchall())
        return [Cosignature(r[0], bytes(r[1]), r[2], bytes(r[3])) for r in rows]

    async def latest_checkpoint(self) -> Checkpoint | None:
        cps = await self.checkpoints()
        return cps[-1] if cps else None

    async def _hashes(self, after_seq: int, upto: int) -> list[str]:
        sql = f"SELECT hash FROM {self.schema}.audit_log WHERE seq > %s AND seq <= %s ORDER BY seq".encode()
        rows = await self._read(lambda c: c.execute(sql, (after_seq, upto)).fetchall())
        return [row[0] for row in rows]

    async def chain_head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last committed record (``(0, GENESIS_HASH)`` when empty)."""
        sql = f"SELECT seq, hash FROM {self.schema}.audit_head".encode()
        row = await self._read(lambda c: c.execute(sql).fetchone())
        assert row is not None
        return int(row[0]), str(row[1])

    async def tree_head(self, tree_size: int | None = None) -> tuple[int, bytes]:
        """``(size, root)`` of the Merkle tree over the first ``tree_size`` records (default: all)."""
        anchor = await self.anchor()
        if tree_size is None:
            sql = f"SELECT seq FROM {self.schema}.audit_head".encode()
            head: int = await self._read(lambda c: c.execute(sql).fetchone()[0])  # type: ignore[index]
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

        Only a prefix of the chain goes; the new anchor keeps the last purged
        record's seq, hash and Merkle frontier so the rest stays verifiable.
        """
        s = self.schema

        def purge(c: psycopg.Connection[Any]) -> int:
            with c.transaction():
                head = c.execute(f"SELECT seq FROM {s}.audit_head WHERE id = 1 FOR UPDATE").fetchone()
                sql = f"SELECT MIN(seq) FROM {s}.audit_log WHERE time_us >= %s"
                first = c.execute(sql, (time_us,)).fetchone()
                last = head[0] if first is None or first[0] is None else first[0] - 1  # type: ignore[index]
                old = c.execute(f"SELECT seq, hash, frontier FROM {s}.audit_anchor").fetchone()
                old_seq = old[0] if old else 0
                frontier = [bytes.fromhex(h) for h in json.loads(old[2])] if old else []
                sql = f"SELECT seq, hash FROM {s}.audit_log WHERE seq > %s AND seq <= %s ORDER BY seq"
                hashes = c.execute(sql, (old_seq, last)).fetchall()
                if not hashes:
                    return 0
                for seq, digest in hashes:
                    frontier_push(frontier, seq - 1, bytes.fromhex(digest))
                c.execute(
                    f"INSERT INTO {s}.audit_anchor VALUES (1, %s, %s, %s) ON CONFLICT (id) DO UPDATE "
                    "SET seq = excluded.seq, hash = excluded.hash, frontier = excluded.frontier",
                    (last, hashes[-1][1], json.dumps([f.hex() for f in frontier])),
                )
                c.execute(f"DELETE FROM {s}.audit_log WHERE seq <= %s", (last,))
                return len(hashes)

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
        except psycopg.Error:
            return False
        return True
