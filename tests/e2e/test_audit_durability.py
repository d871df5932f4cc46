"""The log as evidence under faults: kill -9 under load, and two gateway processes on one PostgreSQL log."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from adapters.stores.audit_postgres import PostgresAuditLog
from adapters.stores.audit_sqlite import SqliteAuditLog
from gateway.core.ports import AuditQuery
from gateway.core.types import SubjectRole
from gateway.demo.data import generate
from tests.gateway_process import (
    PERSONS,
    SEED,
    GatewayProcess,
    agency_headers,
    demo_registries,
    start_gateway_process,
    write_config,
)
from tests.integration.conftest import PG_DSN, require_postgres

pytestmark = pytest.mark.slow


def _people(n: int) -> list[str]:
    return [p.national_id for p in generate(SEED, persons=PERSONS).persons[:n]]


async def _load(gw: GatewayProcess, data_dir: Path, *, total: int, workers: int, tag: str,
                stop_after: int | None = None, on_stop: object = None) -> tuple[set[str], int]:  # fmt: skip
    """Up to ``total`` lookups; returns the request ids whose 200 answer reached us, and attempts made."""
    people = _people(20)
    answered: set[str] = set()
    attempts = 0
    stop = asyncio.Event()

    async def worker(w: int) -> None:
        nonlocal attempts
        async with httpx.AsyncClient(base_url=gw.base_url, timeout=10) as client:
            for i in range(w, total, workers):
                if stop.is_set():
                    return
                rid = f"{tag}-{i}"
                attempts += 1
                try:
                    r = await client.get(f"/v1/population/persons/{people[i % len(people)]}",
                                         headers=agency_headers(data_dir, rid))  # fmt: skip
                except httpx.TransportError:
                    stop.set()
                    return
                assert r.status_code == 200, r.text
                answered.add(rid)
                if stop_after is not None and len(answered) >= stop_after and not stop.is_set():
                    stop.set()
                    gw.kill()   # kill -9 while the other workers' requests are in flight

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return answered, attempts


async def test_after_kill_9_every_answered_exchange_is_recorded_and_the_log_verifies(tmp_path: Path) -> None:
    with demo_registries() as (grpc_port, tax_port):
        config = write_config(tmp_path, grpc_port, tax_port, checkpoint_interval_s=0.2)
        first = start_gateway_process(["--config", str(config)], tmp_path / "first.log")
        answered, attempts = await _load(first, tmp_path, total=600, workers=16, tag="a", stop_after=150)
        assert first.proc.returncode == -9 and len(answered) >= 150 and attempts > len(answered)
        second = start_gateway_process(["--config", str(config)], tmp_path / "second.log")
        after, _ = await _load(second, tmp_path, total=20, workers=4, tag="b")
        assert second.stop() == 0
    store = SqliteAuditLog(tmp_path / "audit.db")
    await store.start()
    try:
        ids = {s.record.request_id for s in await store.query(AuditQuery(limit=10_000))}
        assert answered | after <= ids, f"answered but not recorded: {sorted((answered | after) - ids)[:5]}"
        result = await store.verify()
        assert result.ok, result
        cps = await store.checkpoints()
        assert cps and cps[-1].tree_size == result.head_seq   # the restarted gateway signed its last head
    finally:
        await store.close()


@contextlib.contextmanager
def _throwaway_database() -> Iterator[str]:
    """A fresh PostgreSQL database for whole gateway processes; dropped afterwards. Yields a URL DSN."""
    require_postgres()
    name = f"passerelle_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    info = conninfo_to_dict(PG_DSN)
    auth = str(info.get("user", "postgres")) + (f":{info['password']}" if info.get("password") else "")
    try:
        yield f"postgresql://{auth}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{name}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@pytest.mark.postgres
async def test_two_gateway_processes_on_one_postgres_log_keep_one_whole_chain(tmp_path: Path) -> None:
    with _throwaway_database() as dsn, demo_registries() as (grpc_port, tax_port):
        config = write_config(tmp_path, grpc_port, tax_port, audit=dsn, checkpoint_interval_s=0.1)
        gateways = [start_gateway_process(["--config", str(config)], tmp_path / f"gw{n}.log") for n in (1, 2)]
        try:
            results = await asyncio.gather(
                *(_load(gw, tmp_path, total=300, workers=12, tag=f"g{n}") for n, gw in enumerate(gateways))
            )
        finally:
            codes = [gw.stop() for gw in gateways]
        assert codes == [0, 0]
        answered = set().union(*(ids for ids, _ in results))
        assert len(answered) == 600
        store = PostgresAuditLog(dsn)
        await store.start()
        try:
            records = await store.query(AuditQuery(limit=10_000))
            # Household members get their own (third-party) records of the same exchange: count lookups only.
            lookups = [s for s in records if s.record.subject_role == SubjectRole.DATA_SUBJECT]
            assert sorted(s.record.request_id for s in lookups) == sorted(answered)   # none lost, none doubled
            result = await store.verify()
            assert (result.ok, result.records) == (True, len(records)), result
            sizes = [c.tree_size for c in await store.checkpoints()]
            assert sizes and sizes == sorted(set(sizes)) and sizes[-1] == len(records)
        finally:
            await store.close()
