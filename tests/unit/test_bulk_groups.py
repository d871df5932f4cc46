"""Bulk look-ups' answer groups (``gateway.application.bulk``) over a fake pipeline: what is recorded and
written when the call's token stops holding while items wait at their gates."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import pytest
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from gateway.application.bulk import BulkLookups, ItemAnswer, Order
from gateway.core.auth import Principal
from gateway.core.contracts import Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.pipeline import CallContext, ExchangePipeline

PRINCIPAL = Principal(kind="consumer", id="cedies", issuer="test", jti="j", expires_at=0.0,
                      scopes=frozenset(), claims={})


class FakePipeline:
    """``exchange_as`` answers at once, recording the item after ``before_record``; the token holds
    until ``revoked`` is set."""

    admission = None

    def __init__(self) -> None:
        self.revoked = False
        self.recorded: list[str] = []
        self.security_events: list[str] = []

    def check_still_authenticated(self, principal: Principal, protocol: str) -> None:
        if self.revoked:
            self.security_events.append(Reason.TOKEN_REVOKED)
            raise GatewayError(Reason.TOKEN_REVOKED)

    def record_security_event(self, reason: str, protocol: str) -> None:
        self.security_events.append(reason)

    async def exchange_as(self, principal: Principal, op: Operation, request: Message, ctx: CallContext, *,
                          before_record: Callable[[], Awaitable[None]] | None = None) -> Message:
        await asyncio.sleep(0)
        if before_record is not None:
            await before_record()
        assert isinstance(request, wrappers_pb2.StringValue)
        self.recorded.append(request.value)
        return request


def _lookups(pipeline: FakePipeline, *, group_max: int) -> BulkLookups:
    return BulkLookups(cast(ExchangePipeline, pipeline), {}, max_items=1000, in_flight=128,
                       consumer_in_flight=256, group_max=group_max)


@pytest.mark.parametrize("order", [Order.INDEX, Order.COMPLETION])
async def test_a_token_revoked_during_a_write_lets_that_group_finish_and_no_other(order: Order) -> None:
    """Every item is in the window (and past its own token check) before the client reads anything;
    the token is revoked while the first group is written: that group is the last one recorded and written."""
    pipeline = FakePipeline()
    lookups = _lookups(pipeline, group_max=2)
    written: list[int] = []

    async def write(answers: Sequence[ItemAnswer], done: Callable[[], None]) -> None:
        await asyncio.sleep(0.01)   # a client that reads slowly: every item reaches its gate meanwhile
        for a in answers:
            written.append(a.index)
            done()
        pipeline.revoked = True     # revoked while this group was being written

    items = [f"subject-{i}" for i in range(10)]
    with pytest.raises(GatewayError) as raised:
        await lookups.run(PRINCIPAL, cast(Operation, object()), items, lambda s: wrappers_pb2.StringValue(value=s),
                          CallContext("rest", "token"), order=order, write=write)
    assert raised.value.reason == Reason.TOKEN_REVOKED
    assert len(written) == 2, written
    assert sorted(pipeline.recorded) == sorted(items[i] for i in written)   # no record without its answer
    report = lookups.finished[-1]
    assert report.stopped and report.answered == 2


async def test_a_token_that_holds_answers_every_item_once() -> None:
    pipeline = FakePipeline()
    lookups = _lookups(pipeline, group_max=3)
    written: list[int] = []

    async def write(answers: Sequence[ItemAnswer], done: Callable[[], None]) -> None:
        for a in answers:
            assert a.error is None
            written.append(a.index)
            done()

    items: list[Any] = [f"subject-{i}" for i in range(10)]
    report = await lookups.run(PRINCIPAL, cast(Operation, object()), items,
                               lambda s: wrappers_pb2.StringValue(value=s), CallContext("rest", "token"),
                               order=Order.INDEX, write=write)
    assert written == list(range(10)) and not report.stopped and report.answered == 10
    assert sorted(pipeline.recorded) == sorted(items)



class StuckCommitPipeline(FakePipeline):
    """From the ``after``-th record on, an item's record is appended but its commit never returns
    (the client leaves during that group's commit)."""

    def __init__(self, after: int | None) -> None:
        super().__init__()
        self.after = after

    async def exchange_as(self, principal: Principal, op: Operation, request: Message, ctx: CallContext, *,
                          before_record: Callable[[], Awaitable[None]] | None = None) -> Message:
        await asyncio.sleep(0)
        if before_record is not None:
            await before_record()
        assert isinstance(request, wrappers_pb2.StringValue)
        self.recorded.append(request.value)
        if self.after is not None and len(self.recorded) > self.after:
            await asyncio.Event().wait()
        return request


@pytest.mark.parametrize("moment", ["commit", "write"])
@pytest.mark.parametrize("order", [Order.INDEX, Order.COMPLETION])
async def test_a_departure_leaves_at_most_the_group_in_write_recorded_without_its_answer(
    moment: str, order: Order
) -> None:
    """Two groups of 4 are written; the client leaves while the third is committed, or written."""
    pipeline = StuckCommitPipeline(8 if moment == "commit" else None)
    lookups = _lookups(pipeline, group_max=4)
    written: list[int] = []

    async def write(answers: Sequence[ItemAnswer], done: Callable[[], None]) -> None:
        if len(written) >= 8:           # the third group's write never ends: the client stopped reading
            await asyncio.Event().wait()
        for a in answers:
            written.append(a.index)
            done()

    items = [f"subject-{i}" for i in range(40)]
    run = asyncio.create_task(lookups.run(PRINCIPAL, cast(Operation, object()), items,
                                          lambda s: wrappers_pb2.StringValue(value=s), CallContext("rest", "token"),
                                          order=order, write=write))
    while len(pipeline.recorded) < 12:   # the third group is being committed, or written
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    report = lookups.finished[-1]
    unanswered = set(pipeline.recorded) - {items[i] for i in written}
    assert report.stopped and report.answered == len(written) == 8
    assert {items[i] for i in written} <= set(pipeline.recorded)      # no answered item without its record
    assert 0 < len(unanswered) <= report.in_write <= lookups.group_max, (unanswered, report)
