"""One contract for the citizen session stores (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.stores.session_memory import InMemorySessionStore
from adapters.stores.session_postgres import PostgresSessionStore
from adapters.stores.session_sqlite import SqliteSessionStore
from gateway.core.citizen_sessions import CitizenSession, PendingSignIn, id_hash
from tests.integration.conftest import BACKENDS, PG_DSN, reopening

KINDS = BACKENDS
NOW = 1_800_000_000_000_000


@pytest.fixture(params=KINDS)
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], Any]]:
    """Opens a store on the same location each call, as another process would (memory: the one store)."""
    async with reopening(
        request,
        memory=lambda: InMemorySessionStore(),
        sqlite=lambda: SqliteSessionStore(tmp_path / "sessions.db"),
        postgres=lambda schema: PostgresSessionStore(PG_DSN, schema=schema),
    ) as open_:
        yield open_


def _session(name: str = "s1") -> CitizenSession:
    return CitizenSession(id_hash(name), "1991062434054", "csrf-token", "acr", "id.token.x", NOW, NOW)


def _pending(state: str = "state", created_us: int = NOW, client: str = "192.0.2.1") -> PendingSignIn:
    return PendingSignIn(id_hash(state), "nonce", "verifier" * 6, created_us, id_hash("binding-" + state),
                         id_hash(client))  # fmt: skip


LIMITS = {"not_before_us": NOW - 600_000_000, "max_per_client": 20, "max_total": 1000}


async def test_a_pending_sign_in_is_taken_once(opener: Callable[[], Any]) -> None:
    store = opener()
    pending = _pending()
    await store.put(pending, **LIMITS)
    assert await opener().take(pending.state_hash, NOW - 1) == pending
    assert await store.take(pending.state_hash, NOW - 1) is None


async def test_a_pending_sign_in_older_than_the_limit_is_gone(opener: Callable[[], Any]) -> None:
    store = opener()
    await store.put(_pending(), **LIMITS)
    assert await store.take(id_hash("state"), NOW + 1) is None


async def test_expired_sign_ins_are_pruned_by_put_and_prune(opener: Callable[[], Any]) -> None:
    store = opener()
    for i in range(3):
        await store.put(_pending(f"old{i}", NOW + i), **LIMITS)
    await store.put(_pending("new", NOW + 10), **{**LIMITS, "not_before_us": NOW + 2})   # old0 and old1 go
    assert await opener().prune(NOW + 10) == 1   # old2
    assert await store.take(id_hash("new"), NOW) is not None
    assert await store.prune(NOW + 10) == 0


async def test_sign_ins_in_progress_are_capped_per_client_and_in_all_oldest_first(opener: Callable[[], Any]) -> None:
    """``<img src=/me/auth/login>`` on a busy page: the rows stay bounded, another client's survive."""
    store = opener()
    await store.put(_pending("theirs", NOW, client="203.0.113.9"), **LIMITS)
    for i in range(8):
        await store.put(_pending(f"mine{i}", NOW + 1 + i), **{**LIMITS, "max_per_client": 5})
    assert [await store.take(id_hash(f"mine{i}"), NOW) is not None for i in range(8)] == [False] * 3 + [True] * 5
    for i in range(8):
        await store.put(_pending(f"any{i}", NOW + 20 + i, client=f"198.51.100.{i}"), **{**LIMITS, "max_total": 4})
    kept = [await store.take(id_hash(s), NOW) is not None for s in ["theirs", *(f"any{i}" for i in range(8))]]
    assert kept == [False] * 5 + [True] * 4


async def test_expired_sessions_idle_or_too_old_are_purged(opener: Callable[[], Any]) -> None:
    store = opener()
    for name, created, seen in (("idle", NOW, NOW + 10), ("old", NOW - 100, NOW + 50), ("live", NOW, NOW + 50)):
        session = _session(name)
        await store.create(CitizenSession(session.id_hash, session.national_id, "csrf", "acr", "", created, seen))
    assert await store.purge(seen_before_us=NOW + 20, created_before_us=NOW - 50) == 2
    assert [await opener().get(id_hash(n)) is not None for n in ("idle", "old", "live")] == [False, False, True]
    assert await store.purge(seen_before_us=NOW + 20, created_before_us=NOW - 50) == 0


async def test_a_sqlite_file_of_the_first_version_gains_the_sign_in_columns(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "sessions.db")
    old.executescript("CREATE TABLE sign_in_pending (state_hash TEXT PRIMARY KEY, nonce TEXT NOT NULL, "
                      "code_verifier TEXT NOT NULL, created_us INTEGER NOT NULL) WITHOUT ROWID;"
                      f"INSERT INTO sign_in_pending VALUES ('{id_hash('old')}', 'n', 'v', {NOW});")  # fmt: skip
    old.close()
    store = SqliteSessionStore(tmp_path / "sessions.db")
    await store.put(_pending(), **LIMITS)
    assert await store.take(id_hash("state"), NOW) == _pending()
    found = await store.take(id_hash("old"), NOW)   # its empty binding matches no browser's secret
    assert found is not None and found.binding_hash == ""
    await store.close()


async def test_a_session_is_found_by_its_hash_touched_and_ended(opener: Callable[[], Any]) -> None:
    store = opener()
    await store.create(_session())
    assert await opener().get(id_hash("s1")) == _session()
    await store.touch(id_hash("s1"), NOW + 5)
    found = await store.get(id_hash("s1"))
    assert found is not None and found.last_seen_us == NOW + 5
    await store.end(id_hash("s1"))
    assert await opener().get(id_hash("s1")) is None


async def test_the_store_keeps_no_session_id_in_clear(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path / "s.db")
    await store.create(_session("the-secret-session-id"))
    await store.close()
    files = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"the-secret-session-id" not in files
