"""One contract over the consent and mandate stores: in-memory fake, SQLite, PostgreSQL, and the cache in front.

PostgreSQL cases (marker ``postgres``) each get a throw-away schema, dropped afterwards; they are
skipped with the reason when no server answers, and fail when CI=true (see conftest.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.stores import consent_postgres, mandate_postgres
from adapters.stores._pg_async import migrate
from adapters.stores.consent_cache import CachedConsentStore
from adapters.stores.consent_memory import InMemoryConsentStore
from adapters.stores.consent_postgres import PostgresConsentStore
from adapters.stores.consent_sqlite import SqliteConsentStore
from adapters.stores.mandate_live import LivePolicy
from adapters.stores.mandate_memory import InMemoryMandateStore
from adapters.stores.mandate_postgres import PostgresMandateStore
from adapters.stores.mandate_sqlite import SqliteMandateStore
from consent import Consent, Limit, Mandate, Purpose
from gateway.core.errors import GatewayError, Reason
from tests.integration.conftest import PG_DSN

PURPOSE = Purpose("p", {"fr": "", "de": "", "en": ""}, {})
BASE = Mandate("m1", "cedies", "svc/Get", frozenset({"p"}), "A6-1-e", categories=frozenset({"NAME"}))


PG = pytest.mark.postgres


@dataclass
class Backend:
    """Shared storage; each call opens another store on it, as another gateway process would."""

    kind: str
    open_consents: Callable[[], Any]
    open_mandates: Callable[[], Any]
    opened: list[Any] = field(default_factory=list)

    def consents(self) -> Any:
        self.opened.append(self.open_consents())
        return self.opened[-1]

    def mandates(self) -> Any:
        self.opened.append(self.open_mandates())
        return self.opened[-1]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=PG)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    b = _backend(request.param, request, tmp_path)
    yield b
    for s in b.opened:  # closing twice is harmless; a failed test must not leave pools open
        await s.close()


def _backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if kind == "sqlite":
        path = tmp_path / "c.db"
        return Backend(kind, lambda: SqliteConsentStore(path), lambda: SqliteMandateStore(path))
    schema = request.getfixturevalue("pg_schema")
    return Backend(
        kind,
        lambda: PostgresConsentStore(PG_DSN, schema=schema),
        lambda: PostgresMandateStore(PG_DSN, schema=schema),
    )


@pytest.fixture(
    params=["memory", "sqlite", "cached-sqlite", pytest.param("postgres", marks=PG),
            pytest.param("cached-postgres", marks=PG)]
)  # fmt: skip
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield InMemoryConsentStore()
        return
    b = _backend(request.param.removeprefix("cached-"), request, tmp_path)
    s = b.consents()
    yield CachedConsentStore(s) if request.param.startswith("cached-") else s
    await s.close()


def c(id: str = "c1", **kw: Any) -> Consent:
    return Consent(id, kw.pop("subject", "s"), "cedies", "p", granted_us=kw.pop("granted_us", 10), **kw)


async def test_added_consents_are_found_by_subject_consumer_and_purpose(store: Any) -> None:
    await store.add(c(categories=frozenset({"INCOME"}), procedure_id="case-1", extra={"receipt": "x.y.z"}))
    await store.add(c("c2", subject="t"))
    (found,) = await store.for_subject("s", "cedies", "p")
    assert (found.categories, found.procedure_id, found.extra) == ({"INCOME"}, "case-1", {"receipt": "x.y.z"})
    assert [x.id for x in await store.of_subject("t")] == ["c2"]


async def test_revoke_only_by_its_subject_and_once(store: Any) -> None:
    await store.add(c())
    assert not await store.revoke("c1", "someone-else", 50)
    assert await store.revoke("c1", "s", 50)
    assert not await store.revoke("c1", "s", 60)
    (found,) = await store.for_subject("s", "cedies", "p")
    assert found.revoked_us == 50


async def test_single_use_is_spent_exactly_once(store: Any) -> None:
    await store.add(c(single_use=True))
    results = await asyncio.gather(*(store.spend("c1", 5) for _ in range(20)))
    assert results.count(True) == 1
    (found,) = await store.for_subject("s", "cedies", "p")
    assert found.used_us == 5


async def test_added_consents_keep_empty_categories_and_nested_extra(store: Any) -> None:
    await store.add(c(extra={"receipt": {"kid": "k", "n": [1, 2]}}))
    found = await store.get("c1")
    assert (found.categories, found.extra) == (frozenset(), {"receipt": {"kid": "k", "n": [1, 2]}})
    assert await store.get("missing") is None


async def test_of_subject_lists_the_newest_first(store: Any) -> None:
    for i, granted in enumerate([20, 40, 30]):
        await store.add(c(f"c{i}", granted_us=granted))
    assert [x.id for x in await store.of_subject("s")] == ["c1", "c2", "c0"]


async def test_a_recurring_consent_can_be_spent_again(store: Any) -> None:
    await store.add(c())
    assert await store.spend("c1", 5)
    assert await store.spend("c1", 6)
    assert not await store.spend("missing", 7)


async def test_cached_lookups_see_local_changes_at_once(backend: Backend) -> None:
    store = CachedConsentStore(backend.consents(), ttl_s=3600)
    await store.add(c())
    assert (await store.for_subject("s", "cedies", "p"))[0].revoked_us == 0
    await store.revoke("c1", "s", 50)
    assert (await store.for_subject("s", "cedies", "p"))[0].revoked_us == 50
    await store.close()


async def test_another_instance_sees_a_revocation_once_its_cache_entry_expires(backend: Backend) -> None:
    clock = [0.0]
    a = CachedConsentStore(backend.consents())
    b = CachedConsentStore(backend.consents(), ttl_s=0.5, timer=lambda: clock[0])
    await a.add(c())
    assert (await b.for_subject("s", "cedies", "p"))[0].revoked_us == 0
    await a.revoke("c1", "s", 50)
    clock[0] = 0.49
    assert (await b.for_subject("s", "cedies", "p"))[0].revoked_us == 0  # within the documented staleness
    clock[0] = 0.5
    assert (await b.for_subject("s", "cedies", "p"))[0].revoked_us == 50
    await a.close()
    await b.close()


async def test_old_consent_files_gain_the_procedure_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE consents (id TEXT PRIMARY KEY, subject TEXT NOT NULL, consumer TEXT NOT NULL, "
            "purpose TEXT NOT NULL, categories TEXT NOT NULL, granted_us INTEGER NOT NULL, expires_us INTEGER "
            "NOT NULL, single_use INTEGER NOT NULL, revoked_us INTEGER NOT NULL DEFAULT 0, used_us INTEGER NOT "
            "NULL DEFAULT 0, extra TEXT NOT NULL DEFAULT '{}')"
        )
        db.execute("INSERT INTO consents VALUES ('old','s','cedies','p','[]',1,0,0,0,0,'{}')")
    store = SqliteConsentStore(path)
    (found,) = await store.for_subject("s", "cedies", "p")
    assert (found.id, found.procedure_id) == ("old", "")
    await store.close()


# --- mandates ------------------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=PG)])
async def mandate_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield InMemoryMandateStore()
        return
    s = _backend(request.param, request, tmp_path).mandates()
    yield s
    await s.close()


async def test_run_time_changes_override_configured_mandates(mandate_store: Any) -> None:
    live = LivePolicy([PURPOSE], [BASE], mandate_store)
    await live.start()
    changed = Mandate(
        "m1",
        "cedies",
        "svc/Get",
        frozenset({"p"}),
        "A6-1-e",
        categories=frozenset({"ADDRESS"}),
        limits=(Limit("year", "eq", ("2026",)),),
    )
    entry = await live.put(changed, by="admin", now_us=5)
    assert (entry.origin, entry.updated_by, live.current().mandates) == ("admin", "admin", (changed,))
    await live.delete("m1", by="admin", now_us=6)
    assert live.current().mandates == ()
    await live.close()


async def test_a_second_instance_picks_up_changes_and_a_restart_keeps_them(backend: Backend) -> None:
    a = LivePolicy([PURPOSE], [BASE], backend.mandates(), poll_s=3600)
    b = LivePolicy([PURPOSE], [BASE], backend.mandates(), poll_s=3600)
    await a.start()
    await b.start()
    added = Mandate("m2", "procurement", "svc/Get", frozenset({"p"}), "A6-1-e", fields=frozenset({"name"}))
    await a.put(added, by="admin", now_us=5)
    assert await b.refresh()
    assert {m.id for m in b.current().mandates} == {"m1", "m2"}
    assert not await b.refresh()
    await a.close()
    await b.close()
    restarted = LivePolicy([PURPOSE], [BASE], backend.mandates())
    await restarted.start()
    assert restarted.entry("m2") is not None and restarted.entry("m2").origin == "admin"  # type: ignore[union-attr]
    await restarted.close()


async def test_single_use_is_spent_once_across_connections_and_threads(tmp_path: Path) -> None:
    """Two stores on one file (as two gateway processes would be), spending from many threads at once."""
    a, b = SqliteConsentStore(tmp_path / "c.db"), SqliteConsentStore(tmp_path / "c.db")
    await a.add(c(single_use=True))
    await b.for_subject("s", "cedies", "p")          # open b's connection before the race

    def spend(store: SqliteConsentStore) -> bool:
        return asyncio.run(store.spend("c1", 5))

    results = await asyncio.gather(*(asyncio.to_thread(spend, s) for s in [a, b] * 8))
    assert results.count(True) == 1
    await a.close()
    await b.close()


async def test_single_use_is_spent_once_across_two_stores_racing(backend: Backend) -> None:
    """Two stores on one database (two pools, as two gateway processes would have), spending at once."""
    a, b = backend.consents(), backend.consents()
    await a.add(c(single_use=True))
    await b.for_subject("s", "cedies", "p")  # open b's connections before the race
    results = await asyncio.gather(*(s.spend("c1", 5) for s in [a, b] * 8))
    assert results.count(True) == 1


async def test_concurrent_changes_from_two_instances_each_bump_the_generation(backend: Backend) -> None:
    """Each instance writes one change at a time (as LivePolicy does), both at once."""
    a, b = backend.mandates(), backend.mandates()

    async def changes(store: Any, first: int) -> list[int]:
        return [await store.put(f"m{i}", {"i": i}, i, "admin") for i in range(first, 10, 2)]

    gens = await asyncio.gather(changes(a, 0), changes(b, 1))
    assert sorted(gens[0] + gens[1]) == list(range(1, 11))
    gen, rows = await b.overrides()
    assert (gen, len(rows), await a.generation()) == (10, 10, 10)


@PG
async def test_postgres_stores_migrate_once_when_started_together(pg_schema: str) -> None:
    stores: list[PostgresConsentStore | PostgresMandateStore] = [
        PostgresConsentStore(PG_DSN, schema=pg_schema) for _ in range(3)
    ]
    stores += [PostgresMandateStore(PG_DSN, schema=pg_schema) for _ in range(3)]
    await asyncio.gather(*(s.generation() if isinstance(s, PostgresMandateStore) else s.get("x") for s in stores))
    for s in stores:
        await s.close()
    with psycopg.connect(PG_DSN) as conn:
        rows = conn.execute(f"SELECT component, version FROM {pg_schema}.schema_version ORDER BY 1, 2").fetchall()
    expected = [("consents", v + 1) for v in range(len(consent_postgres.MIGRATIONS))]
    expected += [("mandates", v + 1) for v in range(len(mandate_postgres.MIGRATIONS))]
    assert rows == expected


@PG
async def test_postgres_migrations_apply_only_the_steps_not_yet_applied(pg_schema: str) -> None:
    store = PostgresConsentStore(PG_DSN, schema=pg_schema)
    await store.add(c())
    await store.close()
    later = (*consent_postgres.MIGRATIONS, "ALTER TABLE {s}.consents ADD COLUMN note text NOT NULL DEFAULT 'kept'")
    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
        assert await migrate(conn, pg_schema, "consents", later) == 2
        assert await migrate(conn, pg_schema, "consents", later) == 2  # a second run changes nothing
        cur = await conn.execute(f"SELECT id, note FROM {pg_schema}.consents".encode())
        assert await cur.fetchall() == [("c1", "kept")]


@PG
def test_postgres_stores_refuse_a_schema_name_that_is_not_plain() -> None:
    with pytest.raises(ValueError, match="plain schema name"):
        PostgresConsentStore(PG_DSN, schema="x; DROP TABLE y")


async def test_postgres_store_out_of_reach_refuses_with_a_reason_instead_of_hanging() -> None:
    store = PostgresConsentStore("host=127.0.0.1 port=1 user=postgres dbname=test connect_timeout=1", timeout_s=0.3)
    with pytest.raises(GatewayError) as refused:
        await store.for_subject("s", "cedies", "p")
    assert refused.value.reason == Reason.INTERNAL
    with pytest.raises(GatewayError):
        await store.spend("c1", 5)
    await store.close()
