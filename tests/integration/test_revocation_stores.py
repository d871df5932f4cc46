"""One contract for the revocation stores (memory, SQLite, PostgreSQL) and the PostgreSQL quota board."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.stores.quota_postgres import PostgresQuotaBoard
from adapters.stores.revocations_memory import InMemoryRevocationStore
from adapters.stores.revocations_postgres import PostgresRevocationStore
from adapters.stores.revocations_sqlite import SqliteRevocationStore
from gateway.core.revocation import Revocation
from tests.integration.conftest import BACKENDS, PG_DSN, reopening

KINDS = BACKENDS


@pytest.fixture(params=KINDS)
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], Any]]:
    """Opens a store on the same location each call (memory: the same store: it has one process only)."""
    async with reopening(
        request,
        memory=lambda: InMemoryRevocationStore(),
        sqlite=lambda: SqliteRevocationStore(tmp_path / "revocations.db"),
        postgres=lambda schema: PostgresRevocationStore(PG_DSN, schema=schema),
    ) as open_:
        yield open_


async def test_add_list_replace_and_remove(opener: Callable[[], Any]) -> None:
    store = opener()
    await store.add(Revocation("jti", "j1", "leak", 10, 0, "admin"))
    await store.add(Revocation("consumer", "sandbox", "abuse", 20, 0, "admin"))
    await store.add(Revocation("jti", "j1", "leak, again", 30, 0, "ops"))  # same (kind, value): replaced
    assert await store.active(0) == [
        Revocation("consumer", "sandbox", "abuse", 20, 0, "admin"),
        Revocation("jti", "j1", "leak, again", 30, 0, "ops"),
    ]
    assert await store.remove("jti", "j1") is True
    assert await store.remove("jti", "j1") is False
    assert [r.value for r in await store.active(0)] == ["sandbox"]


async def test_revocations_with_an_end_stop_applying_after_it(opener: Callable[[], Any]) -> None:
    store = opener()
    await store.add(Revocation("jti", "short", "", 1, 1_000, "admin"))
    await store.add(Revocation("key", "kid-1", "", 2, 0, "admin"))
    assert {r.value for r in await store.active(999)} == {"short", "kid-1"}
    assert {r.value for r in await store.active(1_000)} == {"kid-1"}


async def test_changed_reports_writes_from_another_handle_once(opener: Callable[[], Any]) -> None:
    reader, writer = opener(), opener()
    await reader.changed()  # prime
    assert await reader.changed() is False
    await writer.add(Revocation("jti", "x", "", 1))
    assert await reader.changed() is True
    assert await reader.changed() is False
    assert await writer.remove("jti", "nothing") is False
    assert await reader.changed() is False  # nothing removed, nothing to reload
    await writer.remove("jti", "x")
    assert await reader.changed() is True


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_revocations_survive_closing_and_reopening(request: pytest.FixtureRequest, tmp_path: Path,
                                                         kind: str) -> None:  # fmt: skip
    def make() -> Any:
        if kind == "sqlite":
            return SqliteRevocationStore(tmp_path / "r.db")
        return PostgresRevocationStore(PG_DSN, schema=request.getfixturevalue("pg_schema"))

    first = make()
    await first.add(Revocation("consumer", "procurement", "contract ended", 5))
    await first.close()
    again = make()
    try:
        assert [r.value for r in await again.active(0)] == ["procurement"]
    finally:
        await again.close()


@pytest.mark.postgres
async def test_many_processes_migrating_at_once_apply_the_schema_once(pg_schema: str) -> None:
    stores = [PostgresRevocationStore(PG_DSN, schema=pg_schema) for _ in range(6)]
    try:
        await asyncio.gather(*(s.active(0) for s in stores))
        await stores[0].add(Revocation("jti", "j", "", 1))
        for s in stores:
            assert [r.value for r in await s.active(0)] == ["j"]
    finally:
        for s in stores:
            await s.close()


@pytest.mark.postgres
async def test_quota_board_sees_live_processes_and_drops_silent_ones(pg_schema: str) -> None:
    a = PostgresQuotaBoard(PG_DSN, schema=pg_schema, ttl_s=0.5)
    b = PostgresQuotaBoard(PG_DSN, schema=pg_schema, ttl_s=0.5)
    try:
        assert await a.beat("a", {"cedies": 12.5}) == {"a": {"cedies": 12.5}}
        assert await b.beat("b", {}) == {"a": {"cedies": 12.5}, "b": {}}
        await asyncio.sleep(0.7)  # a stays silent past the TTL
        assert await b.beat("b", {"sandbox": 1.0}) == {"b": {"sandbox": 1.0}}
        assert set(await a.beat("a", {})) == {"a", "b"}  # back as soon as it beats again
        await a.leave("a")
        assert set(await b.beat("b", {})) == {"b"}
    finally:
        await a.close()
        await b.close()
