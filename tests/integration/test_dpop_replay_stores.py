"""One contract for the DPoP replay stores (memory, SQLite, PostgreSQL): a proof is used once per window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.stores.dpop_replay_memory import InMemoryProofReplayStore
from adapters.stores.dpop_replay_postgres import PostgresProofReplayStore
from adapters.stores.dpop_replay_sqlite import SqliteProofReplayStore
from tests.integration.conftest import BACKENDS, PG_DSN, reopening

KINDS = BACKENDS
NOW = 1_800_000_000.0


@pytest.fixture(params=KINDS)
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], Any]]:
    """Opens a store on the same location each call, as another process would (memory: the one store)."""
    async with reopening(
        request,
        memory=lambda: InMemoryProofReplayStore(),
        sqlite=lambda: SqliteProofReplayStore(tmp_path / "dpop_replay.db", purge_every_s=0),
        postgres=lambda schema: PostgresProofReplayStore(PG_DSN, schema=schema, purge_every_s=0),
    ) as open_:
        yield open_


async def test_a_key_is_accepted_once_within_its_window(opener: Callable[[], Any]) -> None:
    store = opener()
    assert await store.first_use("k1", NOW + 60, NOW) is True
    assert await store.first_use("k1", NOW + 70, NOW + 10) is False
    assert await store.first_use("k2", NOW + 60, NOW) is True


async def test_a_key_whose_window_has_passed_may_be_recorded_again(opener: Callable[[], Any]) -> None:
    """After ``expires_at`` the proof is refused as too old anyway: its row is only space."""
    store = opener()
    assert await store.first_use("k1", NOW + 60, NOW) is True
    assert await store.first_use("k1", NOW + 130, NOW + 60) is True
    assert await store.first_use("k1", NOW + 140, NOW + 70) is False


async def test_another_process_on_the_same_store_sees_the_use(opener: Callable[[], Any]) -> None:
    first, second = opener(), opener()
    assert await first.first_use("k1", NOW + 60, NOW) is True
    assert await second.first_use("k1", NOW + 60, NOW + 1) is False


async def test_of_many_concurrent_uses_of_one_key_across_two_stores_exactly_one_wins(
    opener: Callable[[], Any],
) -> None:
    stores = [opener(), opener()]
    results = await asyncio.gather(*(stores[i % 2].first_use("race", NOW + 60, NOW) for i in range(40)))
    assert results.count(True) == 1


async def test_expired_keys_are_purged(opener: Callable[[], Any], request: pytest.FixtureRequest) -> None:
    store = opener()
    for n in range(50):
        await store.first_use(f"old{n}", NOW + 1, NOW)
    await store.first_use("fresh", NOW + 200, NOW + 100)
    assert await rows(store) <= 1 + (50 if isinstance(store, InMemoryProofReplayStore) else 0)


async def rows(store: Any) -> int:
    if isinstance(store, InMemoryProofReplayStore):
        return len(store)
    if isinstance(store, SqliteProofReplayStore):
        return await asyncio.to_thread(lambda: store._conn().execute("SELECT count(*) FROM dpop_replay").fetchone()[0])
    return int(await store._db.run(
        lambda c: c.execute(f"SELECT count(*) FROM {store.schema}.dpop_replay".encode()).fetchone()[0]
    ))
