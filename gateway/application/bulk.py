"""Bulk look-ups: many subjects in one streamed call, each item a full exchange.

The call is authenticated once (token and sender constraint, as a single call). Each item then
goes through ``ExchangePipeline.exchange_as`` like a single call: admission (paced to the
consumer's quota rather than refused), caller values, validation, mandate, consent for its
subject, the registry, minimisation, and one audit record (``extra["bulk"] = "1"``: the citizen's
history shows bulk processing), durable before the item's answer is written.

Bounded: at most ``in_flight`` items of one call and ``consumer_in_flight`` items of one consumer's
calls are between their start and their answer being written. An item is written only in its
turn (index order, or one at a time as completed), and it is recorded only once its turn has come
(``before_record``): while a slow client reads, the items of the window wait there and nothing
further is started, so the registries are not called ahead of the client. A client that leaves
cancels the batch: items waiting for their turn are never recorded, items not started never are,
and every answered item was recorded before its answer was written. A client that stays connected but
reads nothing for ``idle_timeout_s`` (no answer could be written) is treated as gone: the batch stops
the same way and gives back all its slots. A consumer runs at most ``consumer_batches`` batches at a
time (``batch_slot``, taken by the doors before the request body is read).

The registry side is the registry's ``bulk_adapter`` where its contract offers a batch method
(``adapters/registries/batching.py`` groups the items in flight into it); otherwise the window's
items fan out as single calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TypeVar

from google.protobuf.message import Message

from gateway.core.auth import Principal
from gateway.core.contracts import Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.pipeline import CallContext, ExchangePipeline

__all__ = ["BatchSlot", "BulkLookups", "BulkReport", "ClientGone", "ItemAnswer", "Order"]

log = logging.getLogger("passerelle.bulk")
T = TypeVar("T")
#: The longest a paced item sleeps before asking the quota again.
_MAX_PACE_S = 0.5


class Order(StrEnum):
    INDEX = "index"             # answers in the order of the items
    COMPLETION = "completion"   # answers as items complete


class ClientGone(Exception):
    """Raised by a door's ``write`` when the client is no longer there: the batch stops."""


class _Idle(ClientGone):
    """No answer could be written for ``idle_timeout_s``: the client is not reading; the batch stops."""


class _Stopped(Exception):
    """The batch may not go on (its token was revoked or expired): ``run`` raises ``error``."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.reason)
        self.error = error


@dataclass(frozen=True, slots=True)
class ItemAnswer:
    """One item's outcome: the minimised answer, or the refusal a single call would have given."""

    index: int
    answer: Message | None
    error: GatewayError | None


@dataclass(frozen=True, slots=True)
class BulkReport:
    """How a batch ended: items asked for, answers written, and whether it stopped early."""

    consumer: str
    items: int
    answered: int
    stopped: bool
    idle: bool = False   # stopped because the client read nothing for idle_timeout_s


Write = Callable[[ItemAnswer], Awaitable[None]]


class _Turns:
    """Whose answer is written next: the next index (``Order.INDEX``) or whoever completes first."""

    def __init__(self, order: Order) -> None:
        self._in_order = order is Order.INDEX
        self._next = 0
        self._waiting: dict[int, asyncio.Event] = {}
        self._lock = asyncio.Lock()

    async def take(self, index: int) -> None:
        if not self._in_order:
            await self._lock.acquire()
        elif index != self._next:
            await self._waiting.setdefault(index, asyncio.Event()).wait()

    def give(self, index: int) -> None:
        if not self._in_order:
            self._lock.release()
            return
        self._next = index + 1
        event = self._waiting.pop(self._next, None)
        if event is not None:
            event.set()


class _ConsumerSlots:
    """Items in flight per consumer over all their batches; a consumer's semaphore lives while used."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}

    def open(self, consumer: str) -> asyncio.Semaphore:
        sem, users = self._slots.get(consumer, (asyncio.Semaphore(self._limit), 0))
        self._slots[consumer] = (sem, users + 1)
        return sem

    def close(self, consumer: str) -> None:
        sem, users = self._slots[consumer]
        if users <= 1:
            del self._slots[consumer]
        else:
            self._slots[consumer] = (sem, users - 1)


class BatchSlot:
    """One of a consumer's ``consumer_batches`` running batches; ``release`` gives it back (once)."""

    def __init__(self, running: dict[str, int], consumer: str) -> None:
        self._running, self._consumer, self._held = running, consumer, True
        running[consumer] = running.get(consumer, 0) + 1

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        left = self._running.get(self._consumer, 1) - 1
        if left <= 0:
            self._running.pop(self._consumer, None)
        else:
            self._running[self._consumer] = left


def _release(*slots: asyncio.Semaphore) -> None:
    for slot in slots:
        slot.release()


class BulkLookups:
    """The use case behind ``passerelle.gateway.v1.BulkExchange/Lookup`` (both doors)."""

    def __init__(
        self, pipeline: ExchangePipeline, operations: Mapping[str, Operation], *, max_items: int, in_flight: int,
        consumer_in_flight: int, idle_timeout_s: float = 30.0, consumer_batches: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pipeline, self._operations = pipeline, operations
        self.max_items, self._in_flight = max_items, in_flight
        self._consumers = _ConsumerSlots(consumer_in_flight)
        #: The longest an answer may wait for the client to read before the batch stops.
        self.idle_timeout_s = idle_timeout_s
        #: Batches one consumer may run at a time (this process).
        self.consumer_batches = consumer_batches
        self._batches: dict[str, int] = {}
        self._clock = clock
        #: The last batches' outcomes, newest last (for operators' debugging and the tests).
        self.finished: deque[BulkReport] = deque(maxlen=64)

    async def authenticate(self, ctx: CallContext) -> Principal:
        """Once per call: the token and its sender constraint, as for a single call (security events)."""
        return await self._pipeline.authenticate_async(ctx)

    def batch_slot(self, principal: Principal, ctx: CallContext) -> BatchSlot:
        """Once per call, right after authentication and before the request body is read: one of the
        consumer's ``consumer_batches`` slots, or ``CONCURRENCY_LIMITED`` (with Retry-After) as other
        quotas refuse. The door releases it when the batch ends, whichever way."""
        if self._batches.get(principal.id, 0) >= self.consumer_batches:
            self._pipeline.record_security_event(Reason.CONCURRENCY_LIMITED, ctx.protocol)
            raise GatewayError(Reason.CONCURRENCY_LIMITED,
                               f"At most {self.consumer_batches} bulk look-ups of one consumer run at a time",
                               retry_after=1.0)
        return BatchSlot(self._batches, principal.id)

    def check_call(self, principal: Principal, ctx: CallContext) -> None:
        """Once per call, before the stream: the values shared by all items (purpose, caller ids,
        x-ai-system) refuse the whole call with the single call's reason, and no item is recorded."""
        self._pipeline.check_call_values(principal, ctx)

    def operation(self, method: str, items: int) -> Operation:
        """The registry operation the batch names, refused as a whole when it cannot be a bulk look-up."""
        op = self._operations.get(method.removeprefix("/"))
        if op is None:
            raise GatewayError(Reason.UNKNOWN_SERVICE, "method names no registry operation of this gateway",
                               field="method")
        if not op.subject_field:
            raise GatewayError(Reason.INVALID_ARGUMENT, "method has no data subject: it cannot be a bulk look-up",
                               field="method")
        if items > self.max_items:
            raise GatewayError(Reason.REQUEST_TOO_LARGE, f"A bulk look-up holds at most {self.max_items} items",
                               field="items")
        return op

    async def run(
        self, principal: Principal, op: Operation, items: Iterable[T], read: Callable[[T], Message],
        ctx: CallContext, *, order: Order, write: Write,
    ) -> BulkReport:
        """Answer every item through ``write`` (which waits for the client); ``read`` turns an item into
        the operation's request or raises ``GatewayError`` (that item alone is refused).

        The call's token is checked again before each item (revocation, expiry with the verifier's
        leeway): once it no longer holds, the batch stops and ``run`` raises that ``GatewayError``
        (``TOKEN_REVOKED``, ``TOKEN_EXPIRED``) for the door to end the stream with; the items not
        processed get no record and no answer."""
        deadline = None if ctx.timeout_s is None else self._clock() + ctx.timeout_s
        batch = _Batch(self, principal, op, ctx, deadline, _Turns(order), write)
        consumer = self._consumers.open(principal.id)
        window = asyncio.Semaphore(self._in_flight)
        count, completed, idle = 0, False, False
        stop: GatewayError | None = None
        try:
            try:
                async with asyncio.TaskGroup() as group:
                    for index, raw in enumerate(items):
                        await window.acquire()
                        await consumer.acquire()
                        count += 1
                        task = group.create_task(batch.item(index, raw, read))
                        task.add_done_callback(lambda _t: _release(window, consumer))
                completed = True
            except BaseExceptionGroup as group_error:
                stopped, rest = group_error.split(_Stopped)
                idle = rest is not None and rest.subgroup(_Idle) is not None
                _, other = rest.split(ClientGone) if rest is not None else (None, None)
                if other is not None:
                    raise other from None
                if stopped is not None:
                    first = stopped.exceptions[0]
                    while isinstance(first, BaseExceptionGroup):
                        first = first.exceptions[0]
                    assert isinstance(first, _Stopped)
                    stop = first.error
        finally:   # also when the door cancels the batch (the client left)
            self._consumers.close(principal.id)
            self.finished.append(BulkReport(principal.id, count, batch.answered, stopped=not completed, idle=idle))
        if stop is not None:
            raise stop
        return self.finished[-1]

    def now(self) -> float:
        return self._clock()

    async def paced(self, consumer: str, deadline: float | None) -> None:
        """Wait until the consumer's quota admits one more request: a batch runs at the quota's pace."""
        admission = self._pipeline.admission
        while admission is not None:
            wait = admission.would_wait(consumer, self._clock())
            if wait <= 0 or (deadline is not None and self._clock() + wait >= deadline):
                return   # admitted, or refused by the pipeline as a single call past its deadline would be
            await asyncio.sleep(min(wait, _MAX_PACE_S))

    @property
    def pipeline(self) -> ExchangePipeline:
        return self._pipeline


@dataclass(slots=True)
class _Batch:
    """One running batch: what each item needs, and the count of answers written."""

    lookups: BulkLookups
    principal: Principal
    op: Operation
    ctx: CallContext
    deadline: float | None
    turns: _Turns
    write: Write
    answered: int = 0

    async def item(self, index: int, raw: T, read: Callable[[T], Message]) -> None:
        holding = False

        async def my_turn() -> None:   # before the record: an item is recorded only once it can be written
            nonlocal holding
            await self.turns.take(index)
            holding = True

        try:
            result = await self._exchange(index, raw, read, my_turn)
            if not holding:
                await my_turn()
            await self._write(index, result)
            self.answered += 1
        finally:
            if holding:
                self.turns.give(index)

    async def _write(self, index: int, result: ItemAnswer) -> None:
        """The door's write, bounded: a client that reads nothing for ``idle_timeout_s`` is gone."""
        idle_s = self.lookups.idle_timeout_s
        try:
            await asyncio.wait_for(self.write(result), idle_s)
        except TimeoutError:
            log.warning("bulk look-up stopped: the client read no answer for %s s", idle_s,
                        extra={"fields": {"consumer": self.principal.id, "request_id": self.ctx.request_id,
                                          "protocol": self.ctx.protocol, "index": index,
                                          "answered": self.answered}})
            raise _Idle from None

    def still_authenticated(self) -> None:
        """Before each item: the token may have been revoked, or expired, since the call began."""
        try:
            self.lookups.pipeline.check_still_authenticated(self.principal, self.ctx.protocol)
        except GatewayError as err:
            raise _Stopped(err) from None

    async def _exchange(
        self, index: int, raw: T, read: Callable[[T], Message], my_turn: Callable[[], Awaitable[None]]
    ) -> ItemAnswer:
        try:
            self.still_authenticated()
            request = read(raw)   # a malformed item is refused before its exchange, as a single call is
            await self.lookups.paced(self.principal.id, self.deadline)
            self.still_authenticated()   # pacing may have taken long
            left = None if self.deadline is None else self.deadline - self.lookups.now()
            ctx = replace(self.ctx, bulk=True, timeout_s=left)
            answer = await self.lookups.pipeline.exchange_as(self.principal, self.op, request, ctx,
                                                             before_record=my_turn)
        except GatewayError as err:
            return ItemAnswer(index, None, err)
        except _Stopped:
            raise
        except Exception:   # recorded INTERNAL by the pipeline; answered INTERNAL, without its text
            return ItemAnswer(index, None, GatewayError(Reason.INTERNAL))
        return ItemAnswer(index, answer, None)
