"""The audit store goes away under load (a private PostgreSQL, stopped and restarted):
fail closed with AUDIT_UNAVAILABLE, readiness false, recovery by itself, one valid chain."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from adapters.stores.audit_postgres import PostgresAuditLog
from tests.faults._calls import Seen, assert_every_answer_audited, grpc_person
from tests.faults.conftest import ThrowawayPostgres, fault_stack

pytestmark = pytest.mark.postgres


async def test_postgres_stopped_and_restarted_under_load(tmp_path: Path, throwaway_postgres: ThrowawayPostgres) -> None:
    pg = throwaway_postgres
    async with fault_stack(tmp_path, audit=pg.dsn) as stack:
        seen: list[Seen] = []
        stop = asyncio.Event()

        async def caller(n: int) -> None:
            i = 0
            while not stop.is_set():
                seen.append(await grpc_person(stack, f"pg{n}-{i}"))
                i += 1

        callers = [asyncio.create_task(caller(n)) for n in range(4)]
        await asyncio.sleep(0.5)
        await asyncio.to_thread(pg.stop)
        down_from = len(seen)
        await asyncio.sleep(0.5)
        assert (await stack.rest.get("/readyz")).status_code == 503
        await asyncio.to_thread(pg.start)
        deadline = time.monotonic() + 20
        while (await stack.rest.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "readiness did not come back"
            await asyncio.sleep(0.1)
        mark = len(seen)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*callers)

        assert {s.reason for s in seen} <= {"", "AUDIT_UNAVAILABLE"}, {s.reason for s in seen}
        assert any(s.reason == "AUDIT_UNAVAILABLE" for s in seen[down_from:mark])
        assert seen[-1].ok and all(s.ok for s in seen[mark + 4 :]), seen[mark:]
        assert_every_answer_audited(seen, await stack.records(), refusals=False)
        audit = stack.running.gateway.audit
        assert isinstance(audit, PostgresAuditLog) and (await audit.verify()).ok
