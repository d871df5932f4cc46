"""Change notifications' state in SQLite (WAL): the default store, shared by the processes of one host.

One connection, each call a transaction (``BEGIN IMMEDIATE``: a writer waits for another process's
writer, never fails half-way). ``ingest`` writes the events, their deliveries and the cursor in one
transaction; ``lease`` picks and marks rows in one. The same SQL, with ``FOR UPDATE SKIP LOCKED`` in
the picking query, is what a PostgreSQL store needs for several gateways (docs/decisions/0009).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from adapters.stores._sqlite import open_wal
from gateway.core.notifications import (
    DeadLetter,
    Delivery,
    NewDelivery,
    StoredEvent,
    Subscription,
    SubscriptionBacklog,
)

__all__ = ["SqliteNotificationStore"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ntf_subscriptions (
  id TEXT PRIMARY KEY, consumer TEXT NOT NULL, event_type TEXT NOT NULL, purpose TEXT NOT NULL,
  mode TEXT NOT NULL, webhook_url TEXT NOT NULL DEFAULT '', secret TEXT NOT NULL DEFAULT '',
  created_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ntf_follows (
  subscription_id TEXT NOT NULL, subject TEXT NOT NULL, since_us INTEGER NOT NULL,
  PRIMARY KEY (subscription_id, subject)
);
CREATE INDEX IF NOT EXISTS ntf_follows_subject ON ntf_follows (subject);
CREATE TABLE IF NOT EXISTS ntf_cursors (registry TEXT PRIMARY KEY, sequence INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ntf_events (
  registry TEXT NOT NULL, event_id TEXT NOT NULL, sequence INTEGER NOT NULL, event_type TEXT NOT NULL,
  subject TEXT NOT NULL, categories TEXT NOT NULL, effective_date TEXT NOT NULL, change BLOB NOT NULL,
  recorded_us INTEGER NOT NULL, PRIMARY KEY (registry, event_id)
);
CREATE TABLE IF NOT EXISTS ntf_outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, subscription_id TEXT NOT NULL, consumer TEXT NOT NULL,
  mode TEXT NOT NULL, registry TEXT NOT NULL, event_id TEXT NOT NULL, subject TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, due_us INTEGER NOT NULL DEFAULT 0,
  owner TEXT NOT NULL DEFAULT '', lease_until_us INTEGER NOT NULL DEFAULT 0, audited INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '', created_us INTEGER NOT NULL, updated_us INTEGER NOT NULL DEFAULT 0,
  UNIQUE (subscription_id, registry, event_id)
);
-- A lease walks pending rows in id order and stops at its limit (the index on due_us made it sort every
-- pending row per lease: 7 ms with 4,000 pending, 105 ms with 40,000).
DROP INDEX IF EXISTS ntf_outbox_pending;
CREATE INDEX IF NOT EXISTS ntf_outbox_next ON ntf_outbox (state, mode, id);
CREATE INDEX IF NOT EXISTS ntf_outbox_order ON ntf_outbox (subscription_id, subject, state, id);
"""

_SUB_COLUMNS = "s.id, s.consumer, s.event_type, s.purpose, s.mode, s.webhook_url, s.secret, s.created_us"
#: The follow count is kept on the subscription row (a COUNT over 100,000 follows cost 3.6 ms per delivery).
_COUNT = "s.follows"
_DELIVERY = """
SELECT o.id, o.subscription_id, o.consumer, o.mode, o.attempts, o.audited, o.created_us,
       e.registry, e.event_id, e.sequence, e.event_type, e.subject, e.categories, e.effective_date, e.change,
       e.recorded_us
FROM ntf_outbox o JOIN ntf_events e ON e.registry = o.registry AND e.event_id = o.event_id
"""
#: Due, pending, not leased, and no older pending row of the same subscription and subject.
_LEASABLE = """
WHERE o.state = 'pending' AND o.mode = ? AND o.due_us <= ? AND o.lease_until_us <= ?
  AND (? = '' OR o.subscription_id = ?)
  AND NOT EXISTS (SELECT 1 FROM ntf_outbox p WHERE p.subscription_id = o.subscription_id
                  AND p.subject = o.subject AND p.state = 'pending' AND p.id < o.id)
ORDER BY o.id LIMIT ?
"""


def _subscription(row: Sequence[Any]) -> Subscription:
    return Subscription(row[0], row[1], row[2], row[3], row[4], row[5], row[6], int(row[7]), int(row[8]))


def _delivery(row: Sequence[Any]) -> Delivery:
    event = StoredEvent(row[7], row[8], int(row[9]), row[10], row[11], tuple(c for c in row[12].split(",") if c),
                        row[13], bytes(row[14]), int(row[15]))  # fmt: skip
    return Delivery(int(row[0]), row[1], row[2], row[3], event, int(row[4]), bool(row[5]), int(row[6]))


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


def _followed(db: sqlite3.Connection, subscription_id: str, subjects: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(subjects), 500):
        chunk = subjects[start:start + 500]
        found |= {r[0] for r in db.execute(
            "SELECT subject FROM ntf_follows WHERE subscription_id = ? "
            f"AND subject IN ({_placeholders(len(chunk))})", (subscription_id, *chunk))}  # fmt: skip
    return found


def _migrate_follow_count(db: sqlite3.Connection) -> None:
    """Files made before the follow count was kept on the subscription row get the column; the count is
    taken again at each open (a worker of an older version, in a rolling upgrade or after a roll-back,
    follows without keeping it). Under the write lock: workers opening the file together each see it once."""
    db.execute("BEGIN IMMEDIATE")
    try:
        columns = {r[1] for r in db.execute("PRAGMA table_info(ntf_subscriptions)")}
        if "follows" not in columns:
            db.execute("ALTER TABLE ntf_subscriptions ADD COLUMN follows INTEGER NOT NULL DEFAULT 0")
        db.execute("UPDATE ntf_subscriptions SET follows = "
                   "(SELECT COUNT(*) FROM ntf_follows f WHERE f.subscription_id = ntf_subscriptions.id)")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class SqliteNotificationStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = open_wal(self._path, isolation_level=None)
            db.executescript(_SCHEMA)
            _migrate_follow_count(db)
            self._db = db
        return self._db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        def locked() -> _T:
            with self._lock, self._tx() as db:
                return fn(db)

        return await asyncio.to_thread(locked)

    async def start(self) -> None:
        await asyncio.to_thread(self._conn)

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None

        await asyncio.to_thread(close)

    # --- subscriptions and follows -------------------------------------------------------------

    async def add_subscription(self, sub: Subscription) -> None:
        await self._run(lambda db: db.execute(
            "INSERT INTO ntf_subscriptions (id, consumer, event_type, purpose, mode, webhook_url, secret, created_us) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (sub.id, sub.consumer, sub.event_type, sub.purpose, sub.mode, sub.webhook_url, sub.secret, sub.created_us)))

    async def subscriptions(self, consumer: str | None = None) -> Sequence[Subscription]:
        def read(db: sqlite3.Connection) -> list[Subscription]:
            rows = db.execute(f"SELECT {_SUB_COLUMNS}, {_COUNT} FROM ntf_subscriptions s "
                              "WHERE ? IS NULL OR s.consumer = ? ORDER BY s.created_us, s.id",
                              (consumer, consumer)).fetchall()  # fmt: skip
            return [_subscription(r) for r in rows]

        return await self._run(read)

    async def subscription(self, subscription_id: str) -> Subscription | None:
        def read(db: sqlite3.Connection) -> Subscription | None:
            row = db.execute(f"SELECT {_SUB_COLUMNS}, {_COUNT} FROM ntf_subscriptions s WHERE s.id = ?",
                             (subscription_id,)).fetchone()  # fmt: skip
            return None if row is None else _subscription(row)

        return await self._run(read)

    async def delete_subscription(self, subscription_id: str) -> bool:
        def delete(db: sqlite3.Connection) -> bool:
            gone = db.execute("DELETE FROM ntf_subscriptions WHERE id = ?", (subscription_id,)).rowcount > 0
            db.execute("DELETE FROM ntf_follows WHERE subscription_id = ?", (subscription_id,))
            db.execute("DELETE FROM ntf_outbox WHERE subscription_id = ? AND state = 'pending'", (subscription_id,))
            return gone

        return await self._run(delete)

    @staticmethod
    def _count(db: sqlite3.Connection, subscription_id: str) -> int:
        row = db.execute("SELECT follows FROM ntf_subscriptions WHERE id = ?", (subscription_id,)).fetchone()
        return 0 if row is None else int(row[0])

    async def follow(self, subscription_id: str, subjects: Sequence[str], now_us: int, limit: int) -> tuple[int, int]:
        unique = list(dict.fromkeys(subjects))

        def follow(db: sqlite3.Connection) -> tuple[int, int]:
            known = _followed(db, subscription_id, unique)
            new = [s for s in unique if s not in known]
            total = self._count(db, subscription_id)
            if total + len(new) > limit:
                raise ValueError(f"a subscription follows at most {limit} persons")
            db.executemany("INSERT INTO ntf_follows (subscription_id, subject, since_us) VALUES (?, ?, ?)",
                           [(subscription_id, s, now_us) for s in new])  # fmt: skip
            db.execute("UPDATE ntf_subscriptions SET follows = follows + ? WHERE id = ?", (len(new), subscription_id))
            return len(new), total + len(new)

        return await self._run(follow)

    async def unfollow(self, subscription_id: str, subjects: Sequence[str]) -> tuple[int, int]:
        def unfollow(db: sqlite3.Connection) -> tuple[int, int]:
            removed = sum(db.execute("DELETE FROM ntf_follows WHERE subscription_id = ? AND subject = ?",
                                     (subscription_id, s)).rowcount for s in set(subjects))  # fmt: skip
            db.execute("UPDATE ntf_subscriptions SET follows = follows - ? WHERE id = ?", (removed, subscription_id))
            return removed, self._count(db, subscription_id)

        return await self._run(unfollow)

    async def followed(self, subscription_id: str, subjects: Sequence[str]) -> tuple[set[str], int]:
        def read(db: sqlite3.Connection) -> tuple[set[str], int]:
            return _followed(db, subscription_id, subjects), self._count(db, subscription_id)

        return await self._run(read)

    async def followers(self, event_type: str, subjects: Sequence[str]) -> Mapping[str, set[str]]:
        def read(db: sqlite3.Connection) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for start in range(0, len(subjects), 500):
                chunk = subjects[start:start + 500]
                for subject, sub_id in db.execute(
                    "SELECT f.subject, f.subscription_id FROM ntf_follows f JOIN ntf_subscriptions s ON "
                    f"s.id = f.subscription_id WHERE s.event_type = ? AND f.subject IN ({_placeholders(len(chunk))})",
                    (event_type, *chunk),
                ):
                    out.setdefault(subject, set()).add(sub_id)
            return out

        return await self._run(read)

    # --- ingest ------------------------------------------------------------------------------

    async def cursor(self, registry: str) -> int:
        def read(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT sequence FROM ntf_cursors WHERE registry = ?", (registry,)).fetchone()
            return 0 if row is None else int(row[0])

        return await self._run(read)

    async def ingest(self, registry: str, cursor: int, events: Sequence[StoredEvent],
                     deliveries: Sequence[NewDelivery]) -> int:  # fmt: skip
        def ingest(db: sqlite3.Connection) -> int:
            db.executemany(
                "INSERT OR IGNORE INTO ntf_events (registry, event_id, sequence, event_type, subject, categories, "
                "effective_date, change, recorded_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(e.registry, e.event_id, e.sequence, e.event_type, e.subject, ",".join(e.categories),
                  e.effective_date, e.change, e.recorded_us) for e in events])  # fmt: skip
            created = 0
            for d in deliveries:
                created += db.execute(
                    "INSERT OR IGNORE INTO ntf_outbox (subscription_id, consumer, mode, registry, event_id, subject, "
                    "created_us) SELECT ?, ?, ?, ?, ?, ?, e.recorded_us FROM ntf_events e "
                    "WHERE e.registry = ? AND e.event_id = ? "
                    "AND EXISTS (SELECT 1 FROM ntf_subscriptions s WHERE s.id = ?)",
                    (d.subscription_id, d.consumer, d.mode, d.registry, d.event_id, d.subject, d.registry, d.event_id,
                     d.subscription_id)).rowcount  # fmt: skip
            db.execute("INSERT INTO ntf_cursors (registry, sequence) VALUES (?, ?) ON CONFLICT (registry) "
                       "DO UPDATE SET sequence = MAX(sequence, excluded.sequence)", (registry, cursor))  # fmt: skip
            return created

        return await self._run(ingest)

    # --- the outbox --------------------------------------------------------------------------

    async def lease(self, owner: str, now_us: int, lease_us: int, limit: int, *, mode: str,
                    subscription_id: str = "") -> Sequence[Delivery]:  # fmt: skip
        def lease(db: sqlite3.Connection) -> list[Delivery]:
            rows = db.execute(_DELIVERY + _LEASABLE,
                              (mode, now_us, now_us, subscription_id, subscription_id, limit)).fetchall()  # fmt: skip
            db.executemany("UPDATE ntf_outbox SET owner = ?, lease_until_us = ? WHERE id = ?",
                           [(owner, now_us + lease_us, r[0]) for r in rows])  # fmt: skip
            return [_delivery(r) for r in rows]

        return await self._run(lease)

    async def _held(self, sql: str, params: tuple[Any, ...]) -> bool:
        return await self._run(lambda db: db.execute(
            sql + " WHERE id = ? AND owner = ? AND state = 'pending'", params).rowcount > 0)

    async def release(self, delivery_id: int, owner: str, due_us: int) -> bool:
        return await self._held("UPDATE ntf_outbox SET due_us = ?, owner = '', lease_until_us = 0",
                                (due_us, delivery_id, owner))  # fmt: skip

    async def unacked(self, subscription_id: str, owner: str, delivery_ids: Sequence[int]) -> set[int]:
        def read(db: sqlite3.Connection) -> set[int]:
            if not delivery_ids:
                return set()
            return {int(r[0]) for r in db.execute(
                f"SELECT id FROM ntf_outbox WHERE id IN ({_placeholders(len(delivery_ids))}) AND owner = ? "
                "AND subscription_id = ? AND state = 'pending'", (*delivery_ids, owner, subscription_id))}  # fmt: skip

        return await self._run(read)

    async def mark_audited(self, delivery_id: int, owner: str) -> bool:
        return await self._held("UPDATE ntf_outbox SET audited = 1", (delivery_id, owner))

    async def finish(self, delivery_id: int, owner: str, state: str, now_us: int) -> bool:
        return await self._held("UPDATE ntf_outbox SET state = ?, owner = '', lease_until_us = 0, updated_us = ?",
                                (state, now_us, delivery_id, owner))  # fmt: skip

    async def retry_later(self, delivery_id: int, owner: str, due_us: int, error: str) -> bool:
        return await self._held("UPDATE ntf_outbox SET attempts = attempts + 1, due_us = ?, last_error = ?, "
                                "owner = '', lease_until_us = 0", (due_us, error, delivery_id, owner))  # fmt: skip

    async def dead(self, delivery_id: int, owner: str, error: str, now_us: int) -> bool:
        return await self._held("UPDATE ntf_outbox SET attempts = attempts + 1, state = 'dead', last_error = ?, "
                                "owner = '', lease_until_us = 0, updated_us = ?",
                                (error, now_us, delivery_id, owner))  # fmt: skip

    async def ack(self, subscription_id: str, event_ids: Sequence[str], now_us: int) -> list[int]:
        def ack(db: sqlite3.Connection) -> list[int]:
            if not event_ids:
                return []
            where = (f"WHERE subscription_id = ? AND event_id IN ({_placeholders(len(event_ids))}) "
                     "AND state = 'pending' AND mode = 'stream' AND owner != '' AND audited = 1")  # fmt: skip
            ids = [int(r[0]) for r in db.execute(f"SELECT id FROM ntf_outbox {where}", (subscription_id, *event_ids))]
            db.execute(f"UPDATE ntf_outbox SET state = 'delivered', owner = '', lease_until_us = 0, updated_us = ? "
                       f"{where}", (now_us, subscription_id, *event_ids))  # fmt: skip
            return ids

        return await self._run(ack)

    _LETTER = ("SELECT o.id, o.subscription_id, o.consumer, o.event_id, e.event_type, o.attempts, o.last_error, "
               "o.updated_us FROM ntf_outbox o JOIN ntf_events e "
               "ON e.registry = o.registry AND e.event_id = o.event_id")

    async def dead_letters(self, consumer: str | None, limit: int) -> Sequence[DeadLetter]:
        def read(db: sqlite3.Connection) -> list[DeadLetter]:
            rows = db.execute(self._LETTER + " WHERE o.state = 'dead' AND (? IS NULL OR o.consumer = ?) "
                              "ORDER BY o.id LIMIT ?", (consumer, consumer, limit)).fetchall()  # fmt: skip
            return [DeadLetter(*r) for r in rows]

        return await self._run(read)

    async def redeliver(self, delivery_id: int, now_us: int) -> DeadLetter | None:
        def redeliver(db: sqlite3.Connection) -> DeadLetter | None:
            row = db.execute(self._LETTER + " WHERE o.id = ? AND o.state = 'dead'", (delivery_id,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE ntf_outbox SET state = 'pending', attempts = 0, due_us = ?, last_error = '' "
                       "WHERE id = ?", (now_us, delivery_id))  # fmt: skip
            return DeadLetter(*row)

        return await self._run(redeliver)

    async def purge(self, before_us: int) -> int:
        def purge(db: sqlite3.Connection) -> int:
            n = db.execute("DELETE FROM ntf_outbox WHERE state IN ('delivered', 'refused', 'skipped') "
                           "AND updated_us < ?", (before_us,)).rowcount  # fmt: skip
            db.execute("DELETE FROM ntf_events WHERE NOT EXISTS (SELECT 1 FROM ntf_outbox o "
                       "WHERE o.registry = ntf_events.registry AND o.event_id = ntf_events.event_id)")
            return int(n)

        return await self._run(purge)

    async def backlog(self) -> Sequence[SubscriptionBacklog]:
        def read(db: sqlite3.Connection) -> list[SubscriptionBacklog]:
            rows = db.execute(
                "SELECT s.id, s.consumer, "
                "(SELECT COUNT(*) FROM ntf_outbox o WHERE o.subscription_id = s.id AND o.state = 'pending'), "
                "(SELECT COALESCE(MIN(created_us), 0) FROM ntf_outbox o WHERE o.subscription_id = s.id "
                " AND o.state = 'pending'), "
                "(SELECT COUNT(*) FROM ntf_outbox o WHERE o.subscription_id = s.id AND o.state = 'dead') "
                "FROM ntf_subscriptions s ORDER BY s.id").fetchall()  # fmt: skip
            return [SubscriptionBacklog(*r) for r in rows]

        return await self._run(read)
