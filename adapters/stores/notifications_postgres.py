"""Change notifications' state in PostgreSQL: one outbox shared by several gateways (hosts or processes).

Same behaviour as ``SqliteNotificationStore`` (the contract is ``tests/integration/test_notification_stores.py``);
what differs is how concurrent gateways are kept apart (docs/decisions/0009):

- **Leases**: the picking query (due, pending, not leased, no older pending row of the same subscription
  and subject) takes its rows ``FOR UPDATE OF o SKIP LOCKED`` and marks them leased in the same
  statement. A row another gateway is leasing at that moment is skipped, not waited for; one whose lease
  was just committed is re-checked by PostgreSQL on its new version and no longer qualifies. So a
  delivery is leased by one owner at a time; every later write names the owner (``WHERE owner = %s``).
- **Ingest and two readers of one registry**: each gateway reads the registry's change stream. The
  transaction first locks the registry's cursor row (``SELECT … FOR UPDATE``) and keeps only the events
  after the cursor it finds: what the other reader already ingested is dropped (even if purged since),
  and the lock serialises a registry's ingests, so its outbox ids grow in commit order (a lease never
  sees a younger row of a subject before an older one commits).
- **Follow limits** hold across gateways: ``follow`` locks the subscription's row first.

Queries run on a small ``psycopg_pool.AsyncConnectionPool`` (autocommit; ``conn.transaction()`` where
several statements must be one). A server out of reach raises ``GatewayError(INTERNAL)``; the reader
and the delivery loop log it by type and try again (the cursor did not move, the lease runs out).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from gateway.core.errors import GatewayError, Reason
from gateway.core.notifications import (
    DeadLetter,
    Delivery,
    NewDelivery,
    StoredEvent,
    Subscription,
    SubscriptionBacklog,
)

from ._pg_async import LazyPool

__all__ = ["MIGRATIONS", "PostgresNotificationStore"]

# Each step is formatted with {s}, the schema name.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {s}.ntf_subscriptions (
        id text PRIMARY KEY, consumer text NOT NULL, event_type text NOT NULL, purpose text NOT NULL,
        mode text NOT NULL, webhook_url text NOT NULL DEFAULT '', secret text NOT NULL DEFAULT '',
        created_us bigint NOT NULL
    );
    CREATE TABLE {s}.ntf_follows (
        subscription_id text NOT NULL, subject text NOT NULL, since_us bigint NOT NULL,
        PRIMARY KEY (subscription_id, subject)
    );
    CREATE INDEX ntf_follows_subject ON {s}.ntf_follows (subject);
    CREATE TABLE {s}.ntf_cursors (registry text PRIMARY KEY, sequence bigint NOT NULL);
    CREATE TABLE {s}.ntf_events (
        registry text NOT NULL, event_id text NOT NULL, sequence bigint NOT NULL, event_type text NOT NULL,
        subject text NOT NULL, categories text NOT NULL, effective_date text NOT NULL, change bytea NOT NULL,
        recorded_us bigint NOT NULL, PRIMARY KEY (registry, event_id)
    );
    CREATE TABLE {s}.ntf_outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, subscription_id text NOT NULL,
        consumer text NOT NULL, mode text NOT NULL, registry text NOT NULL, event_id text NOT NULL,
        subject text NOT NULL, state text NOT NULL DEFAULT 'pending', attempts int NOT NULL DEFAULT 0,
        due_us bigint NOT NULL DEFAULT 0, owner text NOT NULL DEFAULT '', lease_until_us bigint NOT NULL DEFAULT 0,
        audited boolean NOT NULL DEFAULT false, last_error text NOT NULL DEFAULT '', created_us bigint NOT NULL,
        updated_us bigint NOT NULL DEFAULT 0, UNIQUE (subscription_id, registry, event_id)
    );
    CREATE INDEX ntf_outbox_pending ON {s}.ntf_outbox (mode, id) WHERE state = 'pending';  -- walked in id order
    CREATE INDEX ntf_outbox_order ON {s}.ntf_outbox (subscription_id, subject, id) WHERE state = 'pending';
    CREATE INDEX ntf_outbox_event ON {s}.ntf_outbox (registry, event_id);
    CREATE INDEX ntf_outbox_ended ON {s}.ntf_outbox (updated_us) WHERE state IN ('delivered', 'refused', 'skipped');
    """,
    # 2: the follow count kept on the subscription's row (a delivery reads the subscription; counting a
    # follow list of 100,000 there took 10 ms of the server per delivery)
    """
    ALTER TABLE {s}.ntf_subscriptions ADD COLUMN follows bigint NOT NULL DEFAULT 0;
    UPDATE {s}.ntf_subscriptions s SET follows = (SELECT COUNT(*) FROM {s}.ntf_follows f
                                                  WHERE f.subscription_id = s.id);
    """,
)

_SUB = "s.id, s.consumer, s.event_type, s.purpose, s.mode, s.webhook_url, s.secret, s.created_us"
_COUNT = "s.follows"
_EVENT = "e.registry, e.event_id, e.sequence, e.event_type, e.subject, e.categories, e.effective_date, e.change, " \
         "e.recorded_us"  # fmt: skip
#: Lease: pick (as SQLite's _LEASABLE, with SKIP LOCKED) and mark in one statement; the rows come back joined.
_LEASE = """
WITH picked AS (
  SELECT o.id FROM {s}.ntf_outbox o
  WHERE o.state = 'pending' AND o.mode = %(mode)s AND o.due_us <= %(now)s AND o.lease_until_us <= %(now)s
    AND (%(sub)s = '' OR o.subscription_id = %(sub)s)
    AND NOT EXISTS (SELECT 1 FROM {s}.ntf_outbox p WHERE p.subscription_id = o.subscription_id
                    AND p.subject = o.subject AND p.state = 'pending' AND p.id < o.id)
  ORDER BY o.id LIMIT %(limit)s
  FOR UPDATE OF o SKIP LOCKED
)
UPDATE {s}.ntf_outbox o SET owner = %(owner)s, lease_until_us = %(until)s
FROM picked, {s}.ntf_events e
WHERE o.id = picked.id AND e.registry = o.registry AND e.event_id = o.event_id
RETURNING o.id, o.subscription_id, o.consumer, o.mode, o.attempts, o.audited, o.created_us, """ + _EVENT
_INGEST_EVENTS = """
INSERT INTO {s}.ntf_events (registry, event_id, sequence, event_type, subject, categories, effective_date, change,
                            recorded_us)
SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[],
                     %s::bytea[], %s::bigint[])
ON CONFLICT DO NOTHING
"""
_INGEST_DELIVERIES = """
INSERT INTO {s}.ntf_outbox (subscription_id, consumer, mode, registry, event_id, subject, created_us)
SELECT d.sub, d.consumer, d.mode, d.registry, d.event_id, d.subject, e.recorded_us
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[])
     WITH ORDINALITY AS d(sub, consumer, mode, registry, event_id, subject, n)
JOIN {s}.ntf_events e ON e.registry = d.registry AND e.event_id = d.event_id
WHERE EXISTS (SELECT 1 FROM {s}.ntf_subscriptions s WHERE s.id = d.sub)
ORDER BY d.n
ON CONFLICT DO NOTHING
RETURNING id
"""
_HELD = " WHERE id = %s AND owner = %s AND state = 'pending' RETURNING id"
_LETTER = ("SELECT o.id, o.subscription_id, o.consumer, o.event_id, e.event_type, o.attempts, o.last_error, "
           "o.updated_us FROM {s}.ntf_outbox o JOIN {s}.ntf_events e "
           "ON e.registry = o.registry AND e.event_id = o.event_id")  # fmt: skip
_BACKLOG = """
SELECT s.id, s.consumer, COALESCE(b.pending, 0), COALESCE(b.oldest, 0), COALESCE(b.dead, 0)
FROM {s}.ntf_subscriptions s LEFT JOIN (
  SELECT subscription_id, COUNT(*) FILTER (WHERE state = 'pending') AS pending,
         MIN(created_us) FILTER (WHERE state = 'pending') AS oldest, COUNT(*) FILTER (WHERE state = 'dead') AS dead
  FROM {s}.ntf_outbox WHERE state IN ('pending', 'dead') GROUP BY subscription_id
) b ON b.subscription_id = s.id
ORDER BY s.id
"""


def _subscription(r: Sequence[Any]) -> Subscription:
    return Subscription(r[0], r[1], r[2], r[3], r[4], r[5], r[6], int(r[7]), int(r[8]))


def _delivery(r: Sequence[Any]) -> Delivery:
    event = StoredEvent(r[7], r[8], int(r[9]), r[10], r[11], tuple(c for c in r[12].split(",") if c), r[13],
                        bytes(r[14]), int(r[15]))  # fmt: skip
    return Delivery(int(r[0]), r[1], r[2], r[3], event, int(r[4]), bool(r[5]), int(r[6]))


class PostgresNotificationStore:
    """``NotificationStore`` over PostgreSQL (psycopg 3, async), tables in ``schema``.

    ``dsn``: a libpq connection string or ``postgresql://`` URL. Raises ``GatewayError(INTERNAL)`` when
    the server cannot be reached (or no pooled connection frees up within ``timeout_s``).
    """

    def __init__(self, dsn: str, *, schema: str = "passerelle_notifications", min_size: int = 1,
                 max_size: int = 8, timeout_s: float = 5.0) -> None:  # fmt: skip
        self._pool = LazyPool(dsn, schema, "notifications", MIGRATIONS, min_size=min_size, max_size=max_size,
                              timeout_s=timeout_s)  # fmt: skip
        self._s = self._pool.schema

    @property
    def schema(self) -> str:
        return self._s

    @property
    def dsn(self) -> str:
        return self._pool.dsn

    def _q(self, sql: str) -> bytes:
        return sql.replace("{s}", self._s).encode()

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        try:
            pool = await self._pool.get()
            async with pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:   # includes the pool's timeout: the caller retries later
            raise GatewayError(Reason.INTERNAL, "The notification store is unavailable") from exc

    async def _rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple[Any, ...]]:
        async with self._conn() as conn:
            cur = await conn.execute(self._q(sql), params)
            return await cur.fetchall() if cur.description else []

    async def start(self) -> None:
        """Connect and migrate now: a wrong DSN fails the gateway's start (``ConnectionError`` naming the
        setting, never the DSN), not the first event."""
        try:
            await self._pool.get()
        except psycopg.OperationalError as exc:
            raise ConnectionError(f"[notifications] store: PostgreSQL out of reach ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:160] if str(exc) else ''})") from exc  # fmt: skip

    async def close(self) -> None:
        await self._pool.close()

    # --- subscriptions and follows -------------------------------------------------------------

    async def add_subscription(self, sub: Subscription) -> None:
        await self._rows("INSERT INTO {s}.ntf_subscriptions (id, consumer, event_type, purpose, mode, webhook_url, "
                         "secret, created_us) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                         (sub.id, sub.consumer, sub.event_type, sub.purpose, sub.mode, sub.webhook_url, sub.secret,
                          sub.created_us))  # fmt: skip

    async def subscriptions(self, consumer: str | None = None) -> Sequence[Subscription]:
        rows = await self._rows(f"SELECT {_SUB}, {_COUNT} FROM {{s}}.ntf_subscriptions s "
                                "WHERE %(c)s::text IS NULL OR s.consumer = %(c)s ORDER BY s.created_us, s.id",
                                {"c": consumer})  # fmt: skip
        return [_subscription(r) for r in rows]

    async def subscription(self, subscription_id: str) -> Subscription | None:
        rows = await self._rows(f"SELECT {_SUB}, {_COUNT} FROM {{s}}.ntf_subscriptions s WHERE s.id = %s",
                                (subscription_id,))  # fmt: skip
        return _subscription(rows[0]) if rows else None

    async def delete_subscription(self, subscription_id: str) -> bool:
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(self._q("DELETE FROM {s}.ntf_subscriptions WHERE id = %s"), (subscription_id,))
            gone = cur.rowcount > 0
            await conn.execute(self._q("DELETE FROM {s}.ntf_follows WHERE subscription_id = %s"), (subscription_id,))
            await conn.execute(self._q("DELETE FROM {s}.ntf_outbox WHERE subscription_id = %s AND state = 'pending'"),
                               (subscription_id,))  # fmt: skip
            return gone

    async def _followed(self, conn: psycopg.AsyncConnection[Any], subscription_id: str,
                        subjects: Sequence[str]) -> set[str]:  # fmt: skip
        cur = await conn.execute(self._q("SELECT subject FROM {s}.ntf_follows WHERE subscription_id = %s "
                                         "AND subject = ANY(%s::text[])"),
                                 (subscription_id, list(subjects)))  # fmt: skip
        return {r[0] for r in await cur.fetchall()}

    async def _count(self, conn: psycopg.AsyncConnection[Any], subscription_id: str, *, lock: bool = False) -> int:
        """The subscription's follow count (its row locked with ``lock``); counted when it has no row."""
        cur = await conn.execute(self._q("SELECT follows FROM {s}.ntf_subscriptions WHERE id = %s"
                                         + (" FOR UPDATE" if lock else "")), (subscription_id,))  # fmt: skip
        row = await cur.fetchone()
        if row is None:
            cur = await conn.execute(self._q("SELECT COUNT(*) FROM {s}.ntf_follows WHERE subscription_id = %s"),
                                     (subscription_id,))  # fmt: skip
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _add_to_count(self, conn: psycopg.AsyncConnection[Any], subscription_id: str, n: int) -> None:
        await conn.execute(self._q("UPDATE {s}.ntf_subscriptions SET follows = follows + %s WHERE id = %s"),
                           (n, subscription_id))  # fmt: skip

    async def follow(self, subscription_id: str, subjects: Sequence[str], now_us: int, limit: int) -> tuple[int, int]:
        unique = list(dict.fromkeys(subjects))
        async with self._conn() as conn, conn.transaction():
            # The subscription's row, locked: two gateways adding at once cannot both pass the limit.
            total = await self._count(conn, subscription_id, lock=True)
            known = await self._followed(conn, subscription_id, unique)
            new = [s for s in unique if s not in known]
            if total + len(new) > limit:
                raise ValueError(f"a subscription follows at most {limit} persons")
            cur = await conn.execute(self._q("INSERT INTO {s}.ntf_follows (subscription_id, subject, since_us) "
                                             "SELECT %s, unnest(%s::text[]), %s ON CONFLICT DO NOTHING RETURNING 1"),
                                     (subscription_id, new, now_us))  # fmt: skip
            added = len(await cur.fetchall())
            await self._add_to_count(conn, subscription_id, added)
            return added, total + added

    async def unfollow(self, subscription_id: str, subjects: Sequence[str]) -> tuple[int, int]:
        async with self._conn() as conn, conn.transaction():
            await self._count(conn, subscription_id, lock=True)
            cur = await conn.execute(self._q("DELETE FROM {s}.ntf_follows WHERE subscription_id = %s "
                                             "AND subject = ANY(%s::text[])"),
                                     (subscription_id, list(set(subjects))))  # fmt: skip
            removed = cur.rowcount
            await self._add_to_count(conn, subscription_id, -removed)
            return removed, await self._count(conn, subscription_id)

    async def followed(self, subscription_id: str, subjects: Sequence[str]) -> tuple[set[str], int]:
        async with self._conn() as conn, conn.transaction():
            return await self._followed(conn, subscription_id, subjects), await self._count(conn, subscription_id)

    async def followers(self, event_type: str, subjects: Sequence[str]) -> Mapping[str, set[str]]:
        out: dict[str, set[str]] = {}
        if not subjects:
            return out
        for subject, sub_id in await self._rows(
            "SELECT f.subject, f.subscription_id FROM {s}.ntf_follows f JOIN {s}.ntf_subscriptions s "
            "ON s.id = f.subscription_id WHERE s.event_type = %s AND f.subject = ANY(%s::text[])",
            (event_type, list(set(subjects))),
        ):
            out.setdefault(subject, set()).add(sub_id)
        return out

    # --- ingest ------------------------------------------------------------------------------

    async def cursor(self, registry: str) -> int:
        rows = await self._rows("SELECT sequence FROM {s}.ntf_cursors WHERE registry = %s", (registry,))
        return int(rows[0][0]) if rows else 0

    async def ingest(self, registry: str, cursor: int, events: Sequence[StoredEvent],
                     deliveries: Sequence[NewDelivery]) -> int:  # fmt: skip
        """One transaction, under the registry's cursor row lock: the events after the stored cursor, their
        deliveries, the cursor moved forward (never back). A batch another reader already ingested is
        dropped whole; the deliveries created are counted."""
        async with self._conn() as conn, conn.transaction():
            await conn.execute(self._q("INSERT INTO {s}.ntf_cursors (registry, sequence) VALUES (%s, 0) "
                                       "ON CONFLICT DO NOTHING"), (registry,))  # fmt: skip
            cur = await conn.execute(self._q("SELECT sequence FROM {s}.ntf_cursors WHERE registry = %s FOR UPDATE"),
                                     (registry,))  # fmt: skip
            row = await cur.fetchone()
            stored = int(row[0]) if row else 0
            fresh = [e for e in events if e.sequence > stored]
            created = 0
            if fresh:
                await conn.execute(self._q(_INGEST_EVENTS), [
                    [e.registry for e in fresh], [e.event_id for e in fresh], [e.sequence for e in fresh],
                    [e.event_type for e in fresh], [e.subject for e in fresh],
                    [",".join(e.categories) for e in fresh], [e.effective_date for e in fresh],
                    [e.change for e in fresh], [e.recorded_us for e in fresh]])  # fmt: skip
                ids = {(e.registry, e.event_id) for e in fresh}
                new = [d for d in deliveries if (d.registry, d.event_id) in ids]
                if new:
                    cur = await conn.execute(self._q(_INGEST_DELIVERIES), [
                        [d.subscription_id for d in new], [d.consumer for d in new], [d.mode for d in new],
                        [d.registry for d in new], [d.event_id for d in new], [d.subject for d in new]])  # fmt: skip
                    created = len(await cur.fetchall())
            if cursor > stored:
                await conn.execute(self._q("UPDATE {s}.ntf_cursors SET sequence = %s WHERE registry = %s"),
                                   (cursor, registry))  # fmt: skip
            return created

    # --- the outbox --------------------------------------------------------------------------

    async def lease(self, owner: str, now_us: int, lease_us: int, limit: int, *, mode: str,
                    subscription_id: str = "") -> Sequence[Delivery]:  # fmt: skip
        if limit <= 0:
            return []
        rows = await self._rows(_LEASE, {"mode": mode, "now": now_us, "sub": subscription_id, "limit": limit,
                                         "owner": owner, "until": now_us + lease_us})  # fmt: skip
        return sorted((_delivery(r) for r in rows), key=lambda d: d.id)

    async def _held(self, update: str, params: tuple[Any, ...]) -> bool:
        return bool(await self._rows(update + _HELD, params))

    async def release(self, delivery_id: int, owner: str, due_us: int) -> bool:
        return await self._held("UPDATE {s}.ntf_outbox SET due_us = %s, owner = '', lease_until_us = 0",
                                (due_us, delivery_id, owner))  # fmt: skip

    async def unacked(self, subscription_id: str, owner: str, delivery_ids: Sequence[int]) -> set[int]:
        if not delivery_ids:
            return set()
        rows = await self._rows("SELECT id FROM {s}.ntf_outbox WHERE id = ANY(%s::bigint[]) AND owner = %s "
                                "AND subscription_id = %s AND state = 'pending'",
                                (list(delivery_ids), owner, subscription_id))  # fmt: skip
        return {int(r[0]) for r in rows}

    async def mark_audited(self, delivery_id: int, owner: str) -> bool:
        return await self._held("UPDATE {s}.ntf_outbox SET audited = true", (delivery_id, owner))

    async def finish(self, delivery_id: int, owner: str, state: str, now_us: int) -> bool:
        return await self._held("UPDATE {s}.ntf_outbox SET state = %s, owner = '', lease_until_us = 0, "
                                "updated_us = %s", (state, now_us, delivery_id, owner))  # fmt: skip

    async def retry_later(self, delivery_id: int, owner: str, due_us: int, error: str) -> bool:
        return await self._held("UPDATE {s}.ntf_outbox SET attempts = attempts + 1, due_us = %s, last_error = %s, "
                                "owner = '', lease_until_us = 0", (due_us, error, delivery_id, owner))  # fmt: skip

    async def dead(self, delivery_id: int, owner: str, error: str, now_us: int) -> bool:
        return await self._held("UPDATE {s}.ntf_outbox SET attempts = attempts + 1, state = 'dead', "
                                "last_error = %s, owner = '', lease_until_us = 0, updated_us = %s",
                                (error, now_us, delivery_id, owner))  # fmt: skip

    async def ack(self, subscription_id: str, event_ids: Sequence[str], now_us: int) -> list[int]:
        if not event_ids:
            return []
        rows = await self._rows("UPDATE {s}.ntf_outbox SET state = 'delivered', owner = '', lease_until_us = 0, "
                                "updated_us = %s WHERE subscription_id = %s AND event_id = ANY(%s::text[]) "
                                "AND state = 'pending' AND mode = 'stream' AND owner != '' AND audited RETURNING id",
                                (now_us, subscription_id, list(event_ids)))  # fmt: skip
        return sorted(int(r[0]) for r in rows)

    async def dead_letters(self, consumer: str | None, limit: int) -> Sequence[DeadLetter]:
        rows = await self._rows(_LETTER + " WHERE o.state = 'dead' AND (%(c)s::text IS NULL OR o.consumer = %(c)s) "
                                "ORDER BY o.id LIMIT %(n)s", {"c": consumer, "n": limit})  # fmt: skip
        return [DeadLetter(*r) for r in rows]

    async def redeliver(self, delivery_id: int, now_us: int) -> DeadLetter | None:
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(self._q(_LETTER + " WHERE o.id = %s AND o.state = 'dead' FOR UPDATE OF o"),
                                     (delivery_id,))  # fmt: skip
            row = await cur.fetchone()
            if row is None:
                return None
            await conn.execute(self._q("UPDATE {s}.ntf_outbox SET state = 'pending', attempts = 0, due_us = %s, "
                                       "last_error = '' WHERE id = %s"), (now_us, delivery_id))  # fmt: skip
            return DeadLetter(*row)

    async def purge(self, before_us: int) -> int:
        """As the port says; an event read after ``before_us`` is kept even with no delivery yet (another
        gateway's ingest may be adding them)."""
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute(self._q("DELETE FROM {s}.ntf_outbox WHERE state IN ('delivered', 'refused', "
                                             "'skipped') AND updated_us < %s"), (before_us,))  # fmt: skip
            n = cur.rowcount
            await conn.execute(self._q("DELETE FROM {s}.ntf_events e WHERE e.recorded_us < %s AND NOT EXISTS "
                                       "(SELECT 1 FROM {s}.ntf_outbox o WHERE o.registry = e.registry "
                                       "AND o.event_id = e.event_id)"), (before_us,))  # fmt: skip
            return n

    async def backlog(self) -> Sequence[SubscriptionBacklog]:
        return [SubscriptionBacklog(r[0], r[1], int(r[2]), int(r[3]), int(r[4])) for r in await self._rows(_BACKLOG)]
