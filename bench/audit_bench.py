"""Audit log throughput: acknowledged appends/s with p50/p99 ack latency, and verify rate.

    python -m bench.audit_bench            # table, then JSON
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from adapters.stores.audit_postgres import PostgresAuditLog
from adapters.stores.audit_sqlite import SqliteAuditLog
from gateway.core.audit_chain import verify_rows
from gateway.core.types import AuditRecord, EventKind, Outcome

PG_DSN = os.environ.get("PASSERELLE_BENCH_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test")


def _record(i: int) -> AuditRecord:
    return AuditRecord(
        time_us=1_760_000_000_000_000 + i, kind=EventKind.EXCHANGE, consumer="caf-paris",
        service="registry.population.v1.PopulationRegistry/GetPerson", purpose="family-benefit",
        legal_basis="A6-1-e", legal_reference="CSS L512-1", subject=f"ps-{i % 5000:08x}",
        consent_id="", case_id=f"case-{i}", officer_id="agent-7", request_id=f"req-{i}",
        trace_id=f"{i:032x}", fields=("name", "birth_date", "address"), outcome=Outcome.OK, reason="",
        latency_us=1234, protocol="grpc",
    )  # fmt: skip


async def _appends(store: Any, n: int, producers: int) -> dict[str, float]:
    records = [_record(i) for i in range(n)]
    latencies: list[float] = []

    async def producer(p: int) -> None:
        for i in range(p, n, producers):
            t = time.perf_counter()
            await store.append(records[i])
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(producer(p) for p in range(producers)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "appends_per_s": round(n / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1e3, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1e3, 2),
        "commits": store.commits,
    }


def _verify_rate(store: Any) -> dict[str, float]:
    start = time.perf_counter()
    rows = list(store.iter_rows())
    read = time.perf_counter() - start
    start = time.perf_counter()
    result = verify_rows(rows)
    pure = time.perf_counter() - start
    assert result.ok, result
    return {
        "verify_per_s": round(len(rows) / pure),
        "read_and_verify_per_s": round(len(rows) / (read + pure)),
    }


async def _bench(store: Any, n: int, producers: int) -> dict[str, float]:
    await store.start()
    try:
        figures = await _appends(store, n, producers)
    finally:
        await store.close()
    return figures | await asyncio.to_thread(_verify_rate, store)


async def _sqlite(n: int, producers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        return await _bench(SqliteAuditLog(Path(tmp) / "audit.db"), n, producers)


async def _postgres(n: int, producers: int) -> dict[str, float] | str:
    schema = f"audit_bench_{uuid.uuid4().hex[:8]}"
    try:
        return await _bench(PostgresAuditLog(PG_DSN, schema=schema), n, producers)
    except psycopg.OperationalError as exc:
        return f"skipped: {exc}"
    finally:
        try:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE".encode())
        except psycopg.OperationalError:
            pass


def run(n: int = 50_000, producers: int = 64) -> dict[str, Any]:
    """Measure both stores; PostgreSQL is reported as skipped when unreachable."""

    async def both() -> dict[str, Any]:
        return {"sqlite": await _sqlite(n, producers), "postgres": await _postgres(n, producers)}

    return {"n": n, "producers": producers, **asyncio.run(both())}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    result = run(n)
    print(f"{'store':<9} {'appends/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'commits':>8} "
          f"{'verify/s':>9} {'read+verify/s':>14}")  # fmt: skip
    for name in ("sqlite", "postgres"):
        f = result[name]
        if isinstance(f, str):
            print(f"{name:<9} {f}")
            continue
        print(f"{name:<9} {f['appends_per_s']:>10} {f['p50_ms']:>7} {f['p99_ms']:>7} {f['commits']:>8} "
              f"{f['verify_per_s']:>9} {f['read_and_verify_per_s']:>14}")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
