"""Circuit breaker, retries and bulkhead around a registry adapter (fakes, no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pytest
from google.protobuf.message import Message

from adapters.registries.resilience import BreakerState, CircuitBreaker, ResiliencePolicy, ResilientAdapter
from gateway._pb.registry.population.v1 import population_pb2
from gateway.core.contracts import load_operations
from gateway.core.errors import GatewayError, Reason

OPS = {op.method: op for op in load_operations(["registry.population.v1.PopulationRegistry"]).values()}


@dataclass
class FakeRegistry:
    """Answers from a script of reasons ("" = data); counts calls."""

    script: list[str] = field(default_factory=list)
    calls: int = 0
    delay_s: float = 0.0

    async def call(
        self, method: str, request: Message, *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> Message:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        reason = self.script.pop(0) if self.script else ""
        if reason:
            raise GatewayError(Reason(reason))
        return population_pb2.Person(given_names="A")

    async def close(self) -> None: ...


def adapter(fake: FakeRegistry, idempotent: bool = True, **policy: float) -> ResilientAdapter:
    ops = {m: replace(op, idempotent=idempotent) for m, op in OPS.items()}
    defaults = {"backoff_base_s": 0.0, "backoff_max_s": 0.0}
    return ResilientAdapter(fake, ops, ResiliencePolicy(**{**defaults, **policy}), jitter=lambda: 0.0)  # type: ignore[arg-type]


async def get(a: ResilientAdapter, timeout: float = 1.0) -> Message:
    return await a.call("GetPerson", population_pb2.GetPersonRequest(), timeout=timeout, metadata=())


def test_breaker_opens_after_consecutive_failures_and_lets_one_probe_through_later() -> None:
    b = CircuitBreaker(failures_to_open=2, open_s=10)
    b.failure(0)
    assert b.allow(1)
    b.failure(1)
    assert (b.state, b.allow(5)) == (BreakerState.OPEN, False)  # a tuple: mypy would keep OPEN narrowed past success()
    assert b.allow(11) and not b.allow(11)  # one probe only
    b.success()
    assert b.state is BreakerState.CLOSED and b.allow(12)


def test_a_failed_probe_reopens_the_circuit() -> None:
    b = CircuitBreaker(failures_to_open=1, open_s=10)
    b.failure(0)
    assert b.allow(10)
    b.failure(10)
    assert b.state is BreakerState.OPEN and not b.allow(15)


async def test_idempotent_read_is_retried_after_unavailable() -> None:
    fake = FakeRegistry(["REGISTRY_UNAVAILABLE", "REGISTRY_UNAVAILABLE"])
    assert isinstance(await get(adapter(fake, retries=2)), population_pb2.Person)
    assert fake.calls == 3


async def test_non_idempotent_operation_is_never_retried() -> None:
    fake = FakeRegistry(["REGISTRY_UNAVAILABLE"])
    with pytest.raises(GatewayError) as err:
        await get(adapter(fake, idempotent=False, retries=2))
    assert err.value.reason is Reason.REGISTRY_UNAVAILABLE and fake.calls == 1


async def test_timeouts_and_bad_answers_are_not_retried() -> None:
    for reason in ("REGISTRY_TIMEOUT", "REGISTRY_BAD_RESPONSE", "SUBJECT_NOT_FOUND"):
        fake = FakeRegistry([reason])
        with pytest.raises(GatewayError):
            await get(adapter(fake, retries=2))
        assert fake.calls == 1, reason


async def test_no_retry_starts_when_its_backoff_would_pass_the_deadline() -> None:
    fake = FakeRegistry(["REGISTRY_UNAVAILABLE"] * 3)
    a = ResilientAdapter(
        fake, OPS, ResiliencePolicy(retries=2, backoff_base_s=1.0, backoff_max_s=1.0), jitter=lambda: 1.0
    )
    with pytest.raises(GatewayError):
        await get(a, timeout=0.5)
    assert fake.calls == 1


async def test_open_circuit_refuses_without_calling_the_registry() -> None:
    fake = FakeRegistry(["REGISTRY_TIMEOUT"] * 2)
    a = adapter(fake, failures_to_open=2, open_s=60, retries=0)
    for _ in range(2):
        with pytest.raises(GatewayError):
            await get(a)
    with pytest.raises(GatewayError) as err:
        await get(a)
    assert fake.calls == 2 and err.value.reason is Reason.REGISTRY_UNAVAILABLE and err.value.retry_after


async def test_not_found_is_an_answer_and_keeps_the_circuit_closed() -> None:
    fake = FakeRegistry(["SUBJECT_NOT_FOUND"] * 5)
    a = adapter(fake, failures_to_open=2)
    for _ in range(5):
        with pytest.raises(GatewayError):
            await get(a)
    assert a.breaker.state is BreakerState.CLOSED


async def test_bulkhead_refuses_beyond_its_slots_and_waiting_line() -> None:
    fake = FakeRegistry(delay_s=0.2)
    a = adapter(fake, max_concurrency=2, max_queue=1)
    results = await asyncio.gather(*(get(a) for _ in range(5)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, GatewayError)]
    assert len(refused) == 2 and all(r.reason is Reason.REGISTRY_UNAVAILABLE for r in refused)
    assert fake.calls == 3


async def _exactly_free(bulkhead: object, slots: int) -> None:
    """``slots`` slots can be taken at once and not one more: none leaked, none lost."""
    from adapters.registries.resilience import _Bulkhead

    assert isinstance(bulkhead, _Bulkhead)
    for _ in range(slots):
        await asyncio.wait_for(bulkhead.acquire(), 0.5)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bulkhead.acquire(), 0.05)
    for _ in range(slots):
        bulkhead.release()


async def test_bulkhead_serves_waiters_in_order_and_a_waiter_that_leaves_takes_no_slot() -> None:
    from adapters.registries.resilience import _Bulkhead

    bulkhead = _Bulkhead(1, 10)
    await bulkhead.acquire()                      # the only slot
    order: list[str] = []

    async def wait(name: str) -> None:
        await bulkhead.acquire()
        order.append(name)

    first, leaver, last = (asyncio.create_task(wait(n)) for n in ("first", "leaver", "last"))
    await asyncio.sleep(0)
    leaver.cancel()                               # leaves the line before its turn
    await asyncio.sleep(0)
    bulkhead.release()                            # -> first
    await first
    bulkhead.release()                            # -> last (the leaver is skipped)
    await last
    assert order == ["first", "last"] and leaver.cancelled()
    bulkhead.release()
    await _exactly_free(bulkhead, 1)


async def test_bulkhead_slot_handed_to_a_waiter_cancelled_before_it_ran_goes_to_the_next() -> None:
    from adapters.registries.resilience import _Bulkhead

    bulkhead = _Bulkhead(1, 10)
    await bulkhead.acquire()
    a = asyncio.create_task(bulkhead.acquire())
    b = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    bulkhead.release()    # freed for a ...
    a.cancel()            # ... which is cancelled before it runs: the slot goes on to b
    await asyncio.wait_for(b, 1)
    assert a.cancelled()
    bulkhead.release()
    await _exactly_free(bulkhead, 1)


async def test_bulkhead_under_random_cancellations_loses_no_slot() -> None:
    import random

    from adapters.registries.resilience import _Bulkhead, _BulkheadFull

    rnd = random.Random(7)
    bulkhead = _Bulkhead(4, 64)

    async def caller() -> None:
        await asyncio.sleep(rnd.random() * 0.05)
        try:
            async with asyncio.timeout(rnd.choice([0.0005, 0.002, 0.01])):
                await bulkhead.acquire()
        except (TimeoutError, _BulkheadFull):
            return
        try:
            await asyncio.sleep(rnd.random() * 0.003)
        finally:
            bulkhead.release()

    await asyncio.gather(*(caller() for _ in range(600)))
    assert bulkhead._waiting == 0
    await _exactly_free(bulkhead, 4)
