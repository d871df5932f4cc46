"""Graceful shutdown: in-flight exchanges on both doors finish and are in the audit log."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.stores.audit_sqlite import SqliteAuditLog
from gateway.core.ports import AuditQuery
from gateway.core.types import Outcome
from tests.faults._calls import grpc_person, rest_person
from tests.faults.conftest import fault_stack


async def test_stop_drains_in_flight_exchanges_and_flushes_their_audit_records(tmp_path: Path) -> None:
    async with fault_stack(tmp_path) as stack:
        stack.faults.delay_s = 0.5
        calls = [asyncio.create_task(grpc_person(stack, f"drain-grpc-{i}")) for i in range(8)]
        calls += [asyncio.create_task(rest_person(stack, f"drain-rest-{i}")) for i in range(4)]
        await asyncio.sleep(0.2)  # all twelve are waiting on the registry
        await stack.running.stop(grace=5.0)
        seen = await asyncio.gather(*calls)
    assert all(s.ok for s in seen), seen
    log = SqliteAuditLog(stack.config.path(stack.config.gateway.audit.removeprefix("sqlite:")))
    await log.start()
    try:
        records = {r.record.request_id: r.record for r in await log.query(AuditQuery(limit=1000))}
        assert (await log.verify()).ok
    finally:
        await log.close()
    assert all(records[s.request_id].outcome is Outcome.OK for s in seen)


async def test_exchanges_past_the_grace_period_are_cut_with_no_data_released(tmp_path: Path) -> None:
    async with fault_stack(tmp_path) as stack:
        stack.faults.delay_s = 1.5
        call = asyncio.create_task(grpc_person(stack, "too-slow", timeout=5))
        await asyncio.sleep(0.2)
        await stack.running.stop(grace=0.3)
        seen = await call
    assert not seen.ok and seen.reason, seen
