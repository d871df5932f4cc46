"""GroupCommitter.append_all: receipts in order once the one transaction is durable, its failure for all."""

from __future__ import annotations

import asyncio
import gc
import threading

from adapters.stores._audit_common import GroupCommitter
from gateway.core.errors import GatewayError, Reason
from gateway.core.types import AuditReceipt, AuditRecord, EventKind, Outcome


def _record(i: int) -> AuditRecord:
    return AuditRecord(i, EventKind.EXCHANGE, "c", "s", "p", "b", "r", f"subj{i}", "", "", "", "", "", (),
                       Outcome.OK, "", 1, "grpc")  # fmt: skip


async def test_receipts_come_in_order_from_one_transaction() -> None:
    batches: list[int] = []

    def commit(records: list[AuditRecord]) -> list[AuditReceipt]:
        batches.append(len(records))
        return [AuditReceipt(r.time_us, f"h{r.time_us}") for r in records]

    writer = GroupCommitter(commit, max_batch=2)
    writer.start("test-writer")
    try:
        receipts = await writer.append_all([_record(i) for i in range(5)])
    finally:
        await writer.stop()
    assert [r.seq for r in receipts] == [0, 1, 2, 3, 4]
    assert batches == [5]   # never split, even beyond max_batch


async def test_a_failed_transaction_fails_the_call_and_leaves_no_unseen_errors() -> None:
    unseen: list[object] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unseen.append(context))

    def commit(records: list[AuditRecord]) -> list[AuditReceipt]:
        raise OSError("disk full")

    writer = GroupCommitter(commit, max_batch=8)
    writer.start("test-writer")
    reason = None
    try:
        await writer.append_all([_record(i) for i in range(3)])
    except GatewayError as exc:   # not kept: its traceback would keep the futures alive
        reason = exc.reason
    finally:
        await writer.stop()
    assert reason is Reason.AUDIT_UNAVAILABLE
    gc.collect()
    await asyncio.sleep(0)
    assert unseen == []   # no "Future exception was never retrieved" for the other records


async def test_a_caller_that_leaves_while_waiting_leaves_nothing_pending() -> None:
    release = threading.Event()

    def commit(records: list[AuditRecord]) -> list[AuditReceipt]:
        release.wait(5)
        raise OSError("disk full")

    unseen: list[object] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: unseen.append(context))
    writer = GroupCommitter(commit, max_batch=8)
    writer.start("test-writer")
    task = asyncio.create_task(writer.append_all([_record(i) for i in range(3)]))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()
    del task
    release.set()
    await writer.stop()
    gc.collect()
    await asyncio.sleep(0)
    assert unseen == []
