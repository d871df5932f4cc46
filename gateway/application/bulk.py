"""Bulk look-ups: many subjects in one streamed call, each item a full exchange.

The call is authenticated once (token and sender constraint, as a single call). Each item then
goes through ``ExchangePipeline.exchange_as`` like a single call: admission (paced to the
consumer's quota rather than refused), caller values, validation, mandate, consent for its
subject, the registry, minimisation, and one audit record (``extra["bulk"] = "1"``: the citizen's
history shows bulk processing), durable before the item's answer is written.

Bounded: at most ``in_flight`` items of one call and ``consumer_in_flight`` items of one consumer's
calls are between their start and their answer being written. Answers leave in *groups*: an item
that reaches its record (``before_record``) waits at a gate; the batch's writer takes the next group
(in index order, the consecutive items ready from the next index on; as completed, every item
ready), lets their records be appended together (one group commit, not one fsync per item), then
writes their answers with one door write, and only then takes the next group. While a slow client
reads, the items of the window wait at their gates and nothing further is started, so the registries
are not called ahead of the client. A client that leaves cancels the batch: items waiting at their
gate are never recorded, items not started never are, every answered item was recorded before its
answer was written, and the records that may lack a written answer are at most the one group whose
commit or write the departure interrupted (``BulkReport.in_write``). A client that stays connected
but reads nothing for ``idle_timeout_s`` (no answer could be written) is treated as gone: the batch
stops the same way and gives back all its slots. A consumer runs at most ``consumer_batches`` batches
at a time (``batch_slot``, taken by the doors before the request body is read).

The registry side is the registry's ``bulk_adapter`` where its contract offers a batch method
(``adapters/registries/batching.py`` groups the items in flight into it); otherwise the window's
items fan out as single calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TypeVar

from google.protobuf.message import Message

from gateway.core.auth import Principal
from gateway.core.contracts import Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.pipeline import CallContext, ExchangePipeline
from gateway.core.quotas import Admission

__all__ = ["BatchSlot", "BulkLookups", "BulkReport", "ClientGone", "ItemAnswer", "Order"]

log = logging.getLogger("passerelle.bulk")
T = TypeVar("T")
#: The most items of one answer group (recorded with one group commit, written with one write); the
#: default of ``[gateway] bulk_group_max``. A window larger than a group lets the next items reach the
#: registry while a group is committed and written. Measured (10,000 GetPerson items, median of 3 calls,
#: REST; gRPC alike): groups of 32 in a window of 128, 3,135 items/s; 64 in 128, 3,367; 64 in 256, 3,502;
#: 128 in 256, 3,804; 128 in 384, 3,735; 256 in 512, 3,502 — each group waits for its commit (an fsync)
#: and its write, and groups follow one another, so larger groups amortise both, up to where the window
#: no longer keeps the registry busy meanwhile. It also bounds the records a departing client can leave
#: without their answer written.
GROUP_MAX = 128
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
    #: When it stopped: the items of the answer group being recorded or written, whose records may
    #: lack a written answer (0 when it stopped between groups).
    in_write: int = 0
    #: The call's request id (x-request-id, or the one the gateway gave it).
    request_id: str = ""


#: A door's write of one answer group (in the order given), waiting for the client to take it; it calls
#: the second argument once per answer written (after the group's one write, or after each item's).
Write = Callable[[Sequence[ItemAnswer], Callable[[], None]], Awaitable[None]]


class _Groups:
    """Which answers leave next, together: the answer group.

    Items that reach their record (``before_record``) wait at a gate. The batch's writer takes the
    next group — in ``Order.INDEX`` the consecutive items from the next index on that are ready, in
    ``Order.COMPLETION`` every item ready — of at most ``max_size`` items, opens their gates (their
    records are appended together: one group commit), waits for their answers and writes them with
    one door write. Only then is the next group taken. So no item is recorded before every earlier
    group was written, and a client that leaves stops the batch with at most the one group being
    recorded or written left unanswered.
    """

    def __init__(self, order: Order, max_size: int) -> None:
        self._in_order = order is Order.INDEX
        self._max = max_size
        self._next = 0                                      # Order.INDEX: the next index to answer
        self._gates: dict[int, asyncio.Future[None]] = {}   # items waiting to be recorded
        self._done: dict[int, ItemAnswer] = {}              # answers not yet written
        self._opened: set[int] = set()                      # gates opened, answers awaited
        self._changed = asyncio.Event()
        self._ended = False
        self._halted = False

    async def gate(self, index: int) -> None:
        """Called by an item just before its record: returns once its group is taken."""
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gates[index] = gate
        self._changed.set()
        try:
            await gate
        finally:
            self._gates.pop(index, None)

    def finish(self, result: ItemAnswer) -> None:
        """An item's answer (after its record, or without one: a malformed item)."""
        self._done[result.index] = result
        self._changed.set()

    def _ready(self, index: int) -> bool:
        return index in self._gates or index in self._done

    def end(self) -> None:
        """No further item will start."""
        self._ended = True
        self._changed.set()

    def halt(self) -> None:
        """The batch stops: no further group is taken (the one being written is finished)."""
        self._halted = True
        self._changed.set()

    @property
    def halted(self) -> bool:
        return self._halted

    async def take(self, pending: Callable[[], bool]) -> list[int]:
        """The next group's indices, once at least one item is ready; ``[]`` once ``end`` was called
        and ``pending()`` says no started item is left unanswered. Their gates stay closed until
        ``open``: the writer checks the call's token in between."""
        while True:
            if self._halted:
                return []
            if self._in_order:
                group: list[int] = []
                i = self._next
                while len(group) < self._max and self._ready(i):
                    group.append(i)
                    i += 1
            else:
                group = sorted(i for i in (*self._gates, *self._done) if i not in self._opened)[: self._max]
            if group:
                break
            if self._ended and not pending():
                return []
            self._changed.clear()
            await self._changed.wait()
        self._opened.update(group)
        if self._in_order:
            self._next = group[-1] + 1
        return group

    def open(self, group: list[int]) -> None:
        """Let the items of a group taken be recorded (their records are appended together)."""
        for i in group:
            gate = self._gates.get(i)
            if gate is not None and not gate.done():
                gate.set_result(None)

    async def answers(self, group: list[int]) -> list[ItemAnswer]:
        """The group's answers, once every item of it has one."""
        while not all(i in self._done for i in group):
            self._changed.clear()
            await self._changed.wait()
        answers = [self._done.pop(i) for i in group]
        self._opened.difference_update(group)
        return answers


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
        group_max: int = GROUP_MAX, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pipeline, self._operations = pipeline, operations
        self.max_items, self._in_flight = max_items, in_flight
        #: The most items one answer group holds: one group commit and one write. It also bounds the
        #: records a departing client can leave without their answer written.
        self.group_max = max(1, min(group_max, in_flight))
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

    def check_call(self, principal: Principal, ctx: CallContext, op: Operation) -> None:
        """Once per call, before the stream: the values shared by all items (purpose, caller ids,
        x-ai-system, the field mask's names for ``op``) refuse the whole call with the single call's
        reason, and no item is recorded."""
        self._pipeline.check_call_values(principal, ctx, op)

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
        """Answer every item through ``write`` (one call per answer group, which waits for the client);
        ``read`` turns an item into the operation's request or raises ``GatewayError`` (that item alone
        is refused).

        The call's token is checked again before each item and before each answer group is recorded
        (revocation, expiry with the verifier's leeway): once it no longer holds, the batch stops and
        ``run`` raises that ``GatewayError`` (``TOKEN_REVOKED``, ``TOKEN_EXPIRED``) for the door to end
        the stream with; the items not processed get no record and no answer."""
        deadline = None if ctx.timeout_s is None else self._clock() + ctx.timeout_s
        batch = _Batch(self, principal, op, ctx, deadline, _Groups(order, self.group_max), write)
        consumer = self._consumers.open(principal.id)
        window = asyncio.Semaphore(self._in_flight)
        count, completed, idle = 0, False, False
        stop: GatewayError | None = None
        try:
            try:
                async with asyncio.TaskGroup() as group:
                    writer = group.create_task(batch.writer(window, consumer))
                    for index, raw in enumerate(items):
                        await window.acquire()
                        await consumer.acquire()
                        count += 1
                        batch.started = count
                        group.create_task(batch.item(index, raw, read))
                    batch.groups.end()
                    await writer
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
            for _ in range(count - batch.answered):   # the consumer's slots of items never written
                consumer.release()
            self._consumers.close(principal.id)
            self.finished.append(BulkReport(principal.id, count, batch.answered, stopped=not completed, idle=idle,
                                            in_write=batch.in_write, request_id=ctx.request_id))
        if stop is not None:
            raise stop
        return self.finished[-1]

    def now(self) -> float:
        return self._clock()

    async def paced(self, consumer: str, deadline: float | None, turn: asyncio.Lock | None = None) -> None:
        """Wait until the consumer's quota admits one more request: a batch runs at the quota's pace.

        ``turn``: the batch's items wait for the quota one at a time, in the order they came (the one
        waiting asks again when its wait is over; the others wait for their turn without asking). Without
        it, every item of the window slept until the next token and asked again: each token woke the whole
        window (≈ 34–65 asks per item at the shipped quota). An item takes its token in the same loop turn
        as it is let through (``exchange_as`` acquires before its first wait), so the next one sees it."""
        admission = self._pipeline.admission
        if admission is None:
            return
        if (turn is None or not turn.locked()) and admission.would_wait(consumer, self._clock()) <= 0:
            return   # admitted now, and no item of the batch waits before this one
        if turn is None:
            await self._paced(admission, consumer, deadline)
            return
        async with turn:
            await self._paced(admission, consumer, deadline)

    async def _paced(self, admission: Admission, consumer: str, deadline: float | None) -> None:
        while True:
            wait = admission.would_wait(consumer, self._clock())
            if wait <= 0 or (deadline is not None and self._clock() + wait >= deadline):
                return   # admitted, or refused by the pipeline as a single call past its deadline would be
            await asyncio.sleep(min(wait, _MAX_PACE_S))

    @property
    def pipeline(self) -> ExchangePipeline:
        return self._pipeline


@dataclass(slots=True)
class _Batch:
    """One running batch: what each item needs, its answer groups, and the count of answers written."""

    lookups: BulkLookups
    principal: Principal
    op: Operation
    ctx: CallContext
    deadline: float | None
    groups: _Groups
    write: Write
    answered: int = 0
    started: int = 0
    #: Items of the group being recorded or written (0 between groups): when the batch stops, the
    #: records that may lack a written answer are at most these.
    in_write: int = 0
    #: Why the batch stops early (the call's token no longer holds), once an item found out.
    stop: GatewayError | None = None
    #: The call's context as each item's exchange sees it (``bulk``: its records say so).
    item_ctx: CallContext = field(init=False)
    #: Items that must wait for the consumer's quota wait one at a time (``BulkLookups.paced``).
    pace_turn: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.item_ctx = replace(self.ctx, bulk=True, timeout_s=None)

    async def item(self, index: int, raw: T, read: Callable[[T], Message]) -> None:
        async def my_turn() -> None:   # before the record: an item is recorded only once its group is taken
            await self.groups.gate(index)

        try:
            self.groups.finish(await self._exchange(index, raw, read, my_turn))
        except _Stopped as stopped:   # no record for this item; the writer ends the batch after its group
            if self.stop is None:
                self.stop = stopped.error
            self.groups.halt()

    async def writer(self, *slots: asyncio.Semaphore) -> None:
        """Take a group, let its records be appended, write its answers; until every item is answered."""

        def written() -> None:   # the door wrote one more answer of the group
            self.answered += 1
            self.in_write -= 1
            _release(*slots)

        while True:
            group = await self.groups.take(lambda: self.answered < self.started)
            if self.stop is not None:   # the token no longer holds: the group written last was the last one
                raise _Stopped(self.stop)
            if not group:
                return
            # The token again, before any item of the group is recorded: items wait at their gates
            # for as long as the client reads slowly (the whole tail of a batch has passed its own
            # check by then). A token that no longer holds stops the batch here: the group written
            # last was the last one, and the items at their gates are never recorded.
            self.still_authenticated()
            self.groups.open(group)
            self.in_write = len(group)
            answers = await self.groups.answers(group)
            await self._write(answers, written)

    async def _write(self, answers: list[ItemAnswer], written: Callable[[], None]) -> None:
        """The door's write, bounded: a client that reads nothing for ``idle_timeout_s`` is gone. Each
        answer the door reports written starts the wait again: a client that reads a large group slowly
        but steadily is not taken for gone."""
        idle_s = self.lookups.idle_timeout_s
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(idle_s) as idle:

                def progressed() -> None:
                    written()
                    idle.reschedule(loop.time() + idle_s)

                await self.write(answers, progressed)
        except TimeoutError:
            log.warning("bulk look-up stopped: the client read no answer for %s s", idle_s,
                        extra={"fields": {"consumer": self.principal.id, "request_id": self.ctx.request_id,
                                          "protocol": self.ctx.protocol, "index": answers[0].index,
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
            await self.lookups.paced(self.principal.id, self.deadline, self.pace_turn)
            self.still_authenticated()   # pacing may have taken long
            if self.deadline is None:   # one context for every item (the pipeline does not change it)
                ctx = self.item_ctx
            else:
                ctx = replace(self.item_ctx, timeout_s=self.deadline - self.lookups.now())
            answer = await self.lookups.pipeline.exchange_as(self.principal, self.op, request, ctx,
                                                             before_record=my_turn)
        except GatewayError as err:
            return ItemAnswer(index, None, err)
        except _Stopped:
            raise
        except Exception:   # recorded INTERNAL by the pipeline; answered INTERNAL, without its text
            return ItemAnswer(index, None, GatewayError(Reason.INTERNAL))
        return ItemAnswer(index, answer, None)
