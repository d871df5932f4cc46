"""One contract over the consent and mandate stores: in-memory fake, SQLite, and the cache in front."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.stores.consent_cache import CachedConsentStore
from adapters.stores.consent_memory import InMemoryConsentStore
from adapters.stores.consent_sqlite import SqliteConsentStore
from adapters.stores.mandate_live import LivePolicy
from adapters.stores.mandate_memory import InMemoryMandateStore
from adapters.stores.mandate_sqlite import SqliteMandateStore
from consent import Consent, Limit, Mandate, Purpose

PURPOSE = Purpose("p", {"fr": "", "de": "", "en": ""}, {})
BASE = Mandate("m1", "cedies", "svc/Get", frozenset({"p"}), "A6-1-e", categories=frozenset({"NAME"}))


@pytest.fixture(params=["memory", "sqlite", "cached-sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    s: Any
    if request.param == "memory":
        s = InMemoryConsentStore()
    elif request.param == "sqlite":
        s = SqliteConsentStore(tmp_path / "c.db")
    else:
        s = CachedConsentStore(SqliteConsentStore(tmp_path / "c.db"))
    yield s
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


async def test_cached_lookups_see_local_changes_at_once(tmp_path: Path) -> None:
    store = CachedConsentStore(SqliteConsentStore(tmp_path / "c.db"), ttl_s=3600)
    await store.add(c())
    assert (await store.for_subject("s", "cedies", "p"))[0].revoked_us == 0
    await store.revoke("c1", "s", 50)
    assert (await store.for_subject("s", "cedies", "p"))[0].revoked_us == 50
    await store.close()


async def test_another_instance_sees_a_revocation_once_its_cache_entry_expires(tmp_path: Path) -> None:
    clock = [0.0]
    a = CachedConsentStore(SqliteConsentStore(tmp_path / "c.db"))
    b = CachedConsentStore(SqliteConsentStore(tmp_path / "c.db"), ttl_s=0.5, timer=lambda: clock[0])
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


@pytest.fixture(params=["memory", "sqlite"])
def mandate_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return InMemoryMandateStore() if request.param == "memory" else SqliteMandateStore(tmp_path / "c.db")


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


async def test_a_second_instance_picks_up_changes_and_a_restart_keeps_them(tmp_path: Path) -> None:
    a = LivePolicy([PURPOSE], [BASE], SqliteMandateStore(tmp_path / "c.db"), poll_s=3600)
    b = LivePolicy([PURPOSE], [BASE], SqliteMandateStore(tmp_path / "c.db"), poll_s=3600)
    await a.start()
    await b.start()
    added = Mandate("m2", "procurement", "svc/Get", frozenset({"p"}), "A6-1-e", fields=frozenset({"name"}))
    await a.put(added, by="admin", now_us=5)
    assert await b.refresh()
    assert {m.id for m in b.current().mandates} == {"m1", "m2"}
    assert not await b.refresh()
    await a.close()
    await b.close()
    restarted = LivePolicy([PURPOSE], [BASE], SqliteMandateStore(tmp_path / "c.db"))
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
