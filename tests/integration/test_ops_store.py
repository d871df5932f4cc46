"""One contract for the operational-record stores: in memory, SQLite, PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from adapters.stores.ops_store import InMemoryOpsStore, PostgresOpsStore, SqliteOpsStore
from gateway.core.ops_records import ManualSubmission, OpsQuery, OpsRecord
from tests.integration.conftest import PG_DSN, require_postgres


def record(
    n: int, *, registry: str = "rnpp", consumer: str = "cedies", ok: bool = True, registry_us: int = 1000
) -> OpsRecord:
    start = 1_000_000 + n * 10_000
    return OpsRecord(
        request_in_us=start,
        request_out_us=start + 100,
        response_in_us=start + 100 + registry_us,
        response_out_us=start + 200 + registry_us,
        consumer=consumer,
        provider="CTIE",
        registry=registry,
        service="registry.population.v1.PopulationRegistry/GetPerson",
        service_version="v1",
        protocol="grpc",
        purpose="student-aid",
        request_id=f"r{n}",
        trace_id="",
        request_bytes=20,
        response_bytes=90,
        registry_response_bytes=300,
        succeeded=ok,
        fault_code="" if ok else "REGISTRY_TIMEOUT",
    )


@pytest_asyncio.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield InMemoryOpsStore()
        return
    if request.param == "sqlite":
        s: Any = SqliteOpsStore(tmp_path / "ops.db")
        await s.start()
        yield s
        await s.close()
        return
    require_postgres()
    schema = f"ops_test_{uuid.uuid4().hex[:8]}"
    s = PostgresOpsStore(PG_DSN, schema=schema)
    await s.start()
    try:
        yield s
    finally:
        await s.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def test_records_come_back_in_order_with_ids_and_filters(store: Any) -> None:
    for n in range(5):
        store.record(record(n, registry="rnpp" if n % 2 else "acd", ok=n != 3))
    everything = await store.query(OpsQuery(limit=100))
    assert [r.request_id for r in everything] == [f"r{n}" for n in range(5)]
    assert [r.id for r in everything] == sorted(r.id for r in everything)
    assert [r.request_id for r in await store.query(OpsQuery(registry="rnpp"))] == ["r1", "r3"]
    assert [r.request_id for r in await store.query(OpsQuery(succeeded=False))] == ["r3"]
    page = await store.query(OpsQuery(limit=2))
    assert [r.request_id for r in await store.query(OpsQuery(after_id=page[-1].id, limit=2))] == ["r2", "r3"]
    since = record(2).request_in_us
    assert [r.request_id for r in await store.query(OpsQuery(since_us=since, until_us=since + 10_000))] == ["r2"]


async def test_a_stored_record_reads_back_equal(store: Any) -> None:
    original = record(7, ok=False)
    store.record(original)
    [back] = await store.query(OpsQuery())
    assert back.id > 0
    assert replace(back, id=0) == original
    assert back.registry_us == 1000


async def test_summary_says_which_registry_is_slow_for_whom(store: Any) -> None:
    for n in range(20):
        store.record(record(n, registry="rnpp", consumer="cedies", registry_us=1000 + n))
    for n in range(20, 30):
        store.record(record(n, registry="acd", consumer="cedies", registry_us=50_000, ok=n != 25))
    summary = {(s.registry, s.consumer): s for s in await store.summary(OpsQuery())}
    slow, fast = summary[("acd", "cedies")], summary[("rnpp", "cedies")]
    assert (slow.exchanges, slow.failures, fast.exchanges, fast.failures) == (10, 1, 20, 0)
    assert 50_000 <= slow.registry_p50_us <= 50_500
    assert 1009 <= fast.registry_p50_us <= 1009 * 1.01 + 1


async def test_manual_submissions_are_totalled_per_consumer_and_period(store: Any) -> None:
    await store.add(ManualSubmission(100, "cedies", "p", 3))
    await store.add(ManualSubmission(150, "cedies", "p", 2, "case-1"))
    await store.add(ManualSubmission(120, "cnap", "p", 1))
    await store.add(ManualSubmission(200, "cedies", "p", 50))
    assert await store.totals(100, 200) == {"cedies": 5, "cnap": 1}


async def test_a_full_buffer_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    s = SqliteOpsStore(tmp_path / "ops.db", buffer=3, flush_every_s=60)
    await s.start()
    try:
        for n in range(5):
            s.record(record(n))
        assert s.dropped == 2
        assert [r.request_id for r in await s.query(OpsQuery())] == ["r2", "r3", "r4"]
    finally:
        await s.close()
