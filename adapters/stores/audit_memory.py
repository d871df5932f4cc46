"""An in-memory exchange log with the stores' behaviour, for unit tests.

Appends queued in the same loop turn are committed together, like the SQL
stores' group commit. Set ``fail_next`` (one batch) or ``broken`` (until reset)
to see the caller fail closed with ``AUDIT_UNAVAILABLE``. ``rows`` is the raw
log, there for tests that tamper with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence

from gateway.core.audit_chain import GENESIS_HASH, Anchor, Row, VerifyResult, stored_of, verify_rows
from gateway.core.errors import GatewayError, Reason
from gateway.core.merkle import (
    EMPTY_ROOT,
    Checkpoint,
    RangeHasher,
    consistency_proof,
    frontier_push,
    inclusion_proof,
)
from gateway.core.ports import AuditQuery
from gateway.core.signed_note import Cosignature
from gateway.core.types import AuditReceipt, AuditRecord, StoredAuditRecord

from ._audit_common import chain_batch

__all__ = ["InMemoryAuditLog"]


def _matches(row: Row, q: AuditQuery) -> bool:
    seq, time_us, _, consumer, _, purpose, *_ = row
    return (
        seq > q.after_seq
        and q.subject in (None, row[8])
        and q.consumer in (None, consumer)
        and q.purpose in (None, purpose)
        and (q.since_us is None or time_us >= q.since_us)
        and (q.until_us is None or time_us < q.until_us)
    )


class InMemoryAuditLog:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.head: tuple[int, str] = (0, GENESIS_HASH)
        self.anchor_: Anchor = Anchor()
        self.checkpoints_: list[Checkpoint] = []
        self.cosignatures_: dict[tuple[int, str], Cosignature] = {}
        self.commits = 0
        self.fail_next = False
        self.broken = False
        self.closed = False
        self._pending: list[tuple[AuditRecord, asyncio.Future[AuditReceipt]]] = []

    async def start(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self._flush()
        self.closed = True

    async def append(self, record: AuditRecord) -> AuditReceipt:
        if self.closed:
            raise GatewayError(Reason.AUDIT_UNAVAILABLE, "The audit log is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[AuditReceipt] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((record, fut))
        return await fut

    async def append_all(self, records: Sequence[AuditRecord]) -> list[AuditReceipt]:
        return list(await asyncio.gather(*(self.append(r) for r in records)))

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self.broken or self.fail_next:
            self.fail_next = False
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(GatewayError(Reason.AUDIT_UNAVAILABLE))
            return
        rows = chain_batch(*self.head, [record for record, _ in batch])
        self.rows.extend(rows)
        self.head = (rows[-1][0], rows[-1][-1])
        self.commits += 1
        for (_, fut), row in zip(batch, rows, strict=True):
            if not fut.done():
                fut.set_result(AuditReceipt(row[0], row[-1]))

    async def query(self, q: AuditQuery) -> Sequence[StoredAuditRecord]:
        found = (row for row in sorted(self.rows) if _matches(row, q))
        return [stored_of(row) for _, row in zip(range(q.limit), found, strict=False)]

    async def get(self, seq: int) -> StoredAuditRecord | None:
        return next((stored_of(row) for row in self.rows if row[0] == seq), None)

    def iter_rows(self, batch: int = 10_000, *, after_seq: int = 0) -> Iterator[Row]:
        return iter([row for row in sorted(self.rows) if row[0] > after_seq])

    async def anchor(self) -> Anchor:
        return self.anchor_

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.checkpoints_.append(checkpoint)

    async def add_cosignature(self, tree_size: int, cosignature: Cosignature) -> None:
        held = self.cosignatures_.get((tree_size, cosignature.witness))
        if held is None or cosignature.timestamp > held.timestamp:
            self.cosignatures_[(tree_size, cosignature.witness)] = cosignature

    async def cosignatures(self, tree_size: int) -> list[Cosignature]:
        return [c for (size, _), c in sorted(self.cosignatures_.items()) if size == tree_size]

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return consistency_proof(old_size, new_size, self._hasher(new_size))

    async def checkpoints(self) -> list[Checkpoint]:
        return sorted(self.checkpoints_, key=lambda c: c.tree_size)

    async def latest_checkpoint(self) -> Checkpoint | None:
        cps = await self.checkpoints()
        return cps[-1] if cps else None

    def _hasher(self, tree_size: int) -> RangeHasher:
        leaves = [bytes.fromhex(row[-1]) for row in sorted(self.rows) if row[0] <= tree_size]
        return RangeHasher(leaves, offset=self.anchor_.seq, frontier=self.anchor_.frontier)

    async def chain_head(self) -> tuple[int, str]:
        return self.head

    async def tree_head(self, tree_size: int | None = None) -> tuple[int, bytes]:
        hasher = self._hasher(self.head[0] if tree_size is None else tree_size)
        return hasher.size, hasher(0, hasher.size) if hasher.size else EMPTY_ROOT

    async def inclusion_proof(self, seq: int, tree_size: int) -> list[bytes]:
        return inclusion_proof(seq - 1, tree_size, self._hasher(tree_size))

    async def purge_before(self, time_us: int) -> int:
        rows = sorted(self.rows)
        kept_from = next((i for i, row in enumerate(rows) if row[1] >= time_us), len(rows))
        purged = rows[:kept_from]
        if not purged:
            return 0
        frontier = list(self.anchor_.frontier)
        for row in purged:
            frontier_push(frontier, row[0] - 1, bytes.fromhex(row[-1]))
        self.anchor_ = Anchor(purged[-1][0], purged[-1][-1], tuple(frontier))
        self.rows = rows[kept_from:]
        return len(purged)

    async def verify(self, *, checkpoint_valid: Callable[[Checkpoint], bool] | None = None) -> VerifyResult:
        cps = self.checkpoints_
        return verify_rows(self.iter_rows(), cps, anchor=self.anchor_, checkpoint_valid=checkpoint_valid)

    async def healthy(self) -> bool:
        return not (self.closed or self.broken)
