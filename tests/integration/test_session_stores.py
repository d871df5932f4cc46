"""One contract for the citizen session stores (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.stores.session_memory import InMemorySessionStore
from adapters.stores.session_postgres import PostgresSessionStore
from adapters.stores.session_sqlite import SqliteSessionStore
from gateway.core.citizen_sessions import CitizenSession, PendingSignIn, id_hash
from tests.integration.conftest import PG_DSN

KINDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
NOW = 1_800_000_000_000_000


@pytest.fixture(params=KINDS)
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], Any]]:
    """Opens a store on the same location each call, as another process would (memory: the one store)."""
    opened: list[Any] = []
    if request.param == "memory":
        only = InMemorySessionStore()
        make: Callable[[], Any] = lambda: only  # noqa: E731
    elif request.param == "sqlite":
        make = lambda: SqliteSessionStore(tmp_path / "sessions.db")  # noqa: E731
    else:
        schema = request.getfixturevalue("pg_schema")
        make = lambda: PostgresSessionStore(PG_DSN, schema=schema)  # noqa: E731

    def open_() -> Any:
        store = make()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


def _session(name: str = "s1") -> CitizenSession:
    return CitizenSession(id_hash(name), "1991062434054", "csrf-token", "acr", "id.token.x", NOW, NOW)


async def test_a_pending_sign_in_is_taken_once(opener: Callable[[], Any]) -> None:
    store = opener()
    pending = PendingSignIn(id_hash("state"), "nonce", "verifier" * 6, NOW)
    await store.put(pending)
    assert await opener().take(pending.state_hash, NOW - 1) == pending
    assert await store.take(pending.state_hash, NOW - 1) is None


async def test_a_pending_sign_in_older_than_the_limit_is_gone(opener: Callable[[], Any]) -> None:
    store = opener()
    await store.put(PendingSignIn(id_hash("state"), "nonce", "verifier", NOW))
    assert await store.take(id_hash("state"), NOW + 1) is None


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
