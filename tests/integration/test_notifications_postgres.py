"""The PostgreSQL outbox under concurrency (docs/decisions/0009): several store instances, each with its own
connection pool as a gateway has, on one throw-away schema. No delivery is leased by two owners at once and
each subject's deliveries are leased in order; two readers of one registry create each delivery once; a
follow limit holds when two gateways add at once. Skipped without PostgreSQL, failed under CI=true."""

from __future__ import annotations

import asyncio
import time

import pytest

from adapters.stores import notifications_postgres
from adapters.stores._pg_async import migrate
from adapters.stores.notifications_postgres import PostgresNotificationStore
from gateway.core.notifications import NewDelivery, StoredEvent, Subscription
from tests.integration.conftest import PG_DSN

pytestmark = pytest.mark.postgres
TYPE = "registry.population.v1.PersonChanged"
SUBS, SUBJECTS, EVENTS = 3, 20, 120


def _event(n: int) -> StoredEvent:
    return StoredEvent("rnpp", f"e{n}", n, TYPE, f"p{n % SUBJECTS}", ("ADDRESS",), "2026-12-01", b"\x08\x01", n)


def _deliveries(n: int) -> list[NewDelivery]:
    return [NewDelivery(f"s{k}", "cedies", "webhook", "rnpp", f"e{n}", f"p{n % SUBJECTS}") for k in range(SUBS)]


async def _stores(schema: str, n: int) -> list[PostgresNotificationStore]:
    stores = [PostgresNotificationStore(PG_DSN, schema=schema, max_size=4) for _ in range(n)]
    await asyncio.gather(*(s.start() for s in stores))   # migrations run once, under their advisory lock
    for k in range(SUBS):
        await stores[0].add_subscription(Subscription(f"s{k}", "cedies", TYPE, "student-aid", "webhook", "", "", 1))
    return stores


async def _close(stores: list[PostgresNotificationStore]) -> None:
    await asyncio.gather(*(s.close() for s in stores))


async def test_concurrent_workers_on_several_gateways_never_hold_one_delivery_at_once(pg_schema: str) -> None:
    """4 gateways x 3 workers lease, hold briefly and finish every delivery; a shared ledger of who holds
    what proves no row is held twice at a time, each is delivered once, and a subject's rows go in id order."""
    stores = await _stores(pg_schema, 4)
    try:
        created = 0
        for start in range(1, EVENTS + 1, 30):   # batches, as the reader ingests them
            batch = range(start, start + 30)
            created += await stores[0].ingest("rnpp", batch[-1], [_event(n) for n in batch],
                                              [d for n in batch for d in _deliveries(n)])  # fmt: skip
        assert created == EVENTS * SUBS
        holding: dict[int, str] = {}
        done: list[tuple[str, str, int]] = []   # (subscription, subject, id) in finishing order
        overlaps: list[int] = []

        async def worker(store: PostgresNotificationStore, owner: str) -> None:
            idle_since = time.monotonic()
            while time.monotonic() - idle_since < 1.0:
                now = time.time_ns() // 1000
                rows = await store.lease(owner, now, 60_000_000, 4, mode="webhook")
                if not rows:
                    await asyncio.sleep(0.01)
                    continue
                idle_since = time.monotonic()
                for d in rows:
                    if d.id in holding:
                        overlaps.append(d.id)
                    holding[d.id] = owner
                await asyncio.sleep(0.002)   # "sending"
                for d in rows:
                    holding.pop(d.id, None)
                    done.append((d.subscription_id, d.event.subject, d.id))
                    assert await store.finish(d.id, owner, "delivered", time.time_ns() // 1000)

        await asyncio.gather(*(worker(s, f"g{g}-w{w}") for g, s in enumerate(stores) for w in range(3)))
        assert overlaps == []
        assert sorted(i for _, _, i in done) == sorted(set(i for _, _, i in done)) and len(done) == EVENTS * SUBS
        per_key: dict[tuple[str, str], list[int]] = {}
        for sub, subject, i in done:
            per_key.setdefault((sub, subject), []).append(i)
        assert all(ids == sorted(ids) for ids in per_key.values())
        assert all(b.pending == 0 for b in await stores[0].backlog())
    finally:
        await _close(stores)


async def test_two_readers_of_one_registry_create_each_delivery_once(pg_schema: str) -> None:
    """Both gateways read the same stream and ingest overlapping batches at once: the cursor row's lock
    keeps only what is after it, so each delivery exists once, even after the first ones were purged."""
    a, b = stores = await _stores(pg_schema, 2)
    try:
        async def read(store: PostgresNotificationStore, size: int) -> int:
            created = 0
            for start in range(1, EVENTS + 1, size):
                batch = range(start, min(start + size, EVENTS + 1))
                created += await store.ingest("rnpp", batch[-1], [_event(n) for n in batch],
                                              [d for n in batch for d in _deliveries(n)])  # fmt: skip
            return created

        created = await asyncio.gather(read(a, 7), read(b, 11))
        assert sum(created) == EVENTS * SUBS
        assert await a.cursor("rnpp") == EVENTS
        rows = await a.lease("w", 10**15, 1, 10_000, mode="webhook")
        for d in rows:
            await a.finish(d.id, "w", "delivered", 10)
        await a.purge(10**15)   # the events and their deliveries are gone
        assert await b.ingest("rnpp", 10, [_event(n) for n in range(1, 11)],
                              [d for n in range(1, 11) for d in _deliveries(n)]) == 0   # a late reader's batch
    finally:
        await _close(stores)


async def test_a_follow_limit_holds_when_two_gateways_add_at_once(pg_schema: str) -> None:
    stores = await _stores(pg_schema, 2)
    try:
        results = await asyncio.gather(
            *(s.follow("s0", [f"g{g}-p{n}" for n in range(60)], 1, 100) for g, s in enumerate(stores)),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["ValueError", "tuple"]
        _, total = await stores[1].followed("s0", [])
        assert total == 60
    finally:
        await _close(stores)


async def test_a_schema_of_the_first_version_gets_its_follow_counts_when_migrated(pg_schema: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
        await migrate(conn, pg_schema, "notifications", notifications_postgres.MIGRATIONS[:1])
        await conn.execute(f"INSERT INTO {pg_schema}.ntf_subscriptions VALUES "
                           "('s0', 'cedies', 't', 'p', 'webhook', '', '', 1)".encode())  # fmt: skip
        await conn.execute(f"INSERT INTO {pg_schema}.ntf_follows SELECT 's0', 'p' || n, 1 "
                           "FROM generate_series(1, 7) n".encode())  # fmt: skip
    store = PostgresNotificationStore(PG_DSN, schema=pg_schema)
    await store.start()
    try:
        got = await store.subscription("s0")
        assert got is not None and got.follows == 7
        assert await store.unfollow("s0", ["p1", "p2", "p99"]) == (2, 5)
        assert await store.follow("s0", ["p1", "p3"], 2, 100) == (1, 6)
        assert [s.follows for s in await store.subscriptions("cedies")] == [6]
    finally:
        await store.close()


async def test_an_unreachable_server_is_an_internal_refusal_not_a_hang() -> None:
    from gateway.core.errors import GatewayError, Reason

    store = PostgresNotificationStore("host=127.0.0.1 port=1 user=postgres dbname=test connect_timeout=1",
                                      timeout_s=0.3)  # fmt: skip
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        await store.cursor("rnpp")
    assert caught.value.reason is Reason.INTERNAL and time.monotonic() - started < 5
    with pytest.raises(ConnectionError, match=r"^\[notifications\] store: PostgreSQL out of reach"):
        await store.start()   # at the gateway's start: one line naming the setting, not the DSN
    await store.close()
