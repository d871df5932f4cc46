"""Resilience around any ``RegistryAdapter``: circuit breaker, bounded retries, bulkhead.

* **Bulkhead**: at most ``max_concurrency`` calls in flight to one registry and at
  most ``max_queue`` waiting for a slot; beyond that a call is refused at once
  (``REGISTRY_UNAVAILABLE``), so a slow registry holds a bounded share of the
  gateway (tasks, memory, connections) and other registries keep answering.
* **Circuit breaker** (per registry): after ``failures_to_open`` consecutive
  failed calls (unavailable, timeout, bad answer; a call and its retries count
  once; a full bulkhead does not count) calls are refused at once for
  ``open_s`` seconds; then one probe call is let through (half-open) and its
  outcome closes or re-opens the circuit. "Not found" and "invalid argument"
  are answers, not failures.
* **Retries**: only for idempotent operations (``Operation.idempotent``), only
  after ``REGISTRY_UNAVAILABLE`` (the registry said so before doing the work),
  at most ``retries`` times, with full-jitter exponential backoff, and never past
  the caller's deadline: a retry that cannot finish in time is not started.

The breaker is a plain state machine with time passed in (``CircuitBreaker``);
the wrapper does the I/O.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from google.protobuf.message import Message

from gateway.core.contracts import Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.ports import RegistryAdapter

__all__ = ["BreakerState", "CircuitBreaker", "ResiliencePolicy", "ResilientAdapter"]

#: Reasons that count against the registry's health.
FAILURES = frozenset({Reason.REGISTRY_UNAVAILABLE, Reason.REGISTRY_TIMEOUT, Reason.REGISTRY_BAD_RESPONSE})


@dataclass(frozen=True, slots=True)
class ResiliencePolicy:
    max_concurrency: int = 256
    max_queue: int = 256
    retries: int = 2
    backoff_base_s: float = 0.01
    backoff_max_s: float = 0.2
    failures_to_open: int = 5
    open_s: float = 5.0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Consecutive-failure breaker. ``now`` is always passed in (monotonic seconds)."""

    def __init__(self, failures_to_open: int, open_s: float) -> None:
        self._threshold = failures_to_open
        self._open_s = open_s
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    def allow(self, now: float) -> bool:
        """May a call go out now? In half-open state only one probe at a time."""
        if self.state is BreakerState.OPEN and now - self._opened_at >= self._open_s:
            self.state = BreakerState.HALF_OPEN
            self._probing = False
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def retry_after(self, now: float) -> float:
        return max(0.0, self._opened_at + self._open_s - now)

    def abandon(self) -> None:
        """The allowed call never reached the registry (no slot, cancelled): free the probe."""
        self._probing = False

    def success(self) -> None:
        self.state, self._failures, self._probing = BreakerState.CLOSED, 0, False

    def failure(self, now: float) -> None:
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self.state, self._opened_at, self._probing = BreakerState.OPEN, now, False


class _BulkheadFull(GatewayError):
    """The gateway's own limit, not the registry's health: neither retried nor counted by the breaker."""


class _Bulkhead:
    """A semaphore with a bounded waiting line (``asyncio.Semaphore``: first come, first served)."""

    def __init__(self, limit: int, max_queue: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._max_queue = max_queue
        self._waiting = 0

    def locked(self) -> bool:
        """No slot free, or callers already waiting for one."""
        return self._slots.locked()

    async def acquire(self) -> None:
        if self._slots.locked():
            if self._waiting >= self._max_queue:
                raise _BulkheadFull(Reason.REGISTRY_UNAVAILABLE, "The registry is at its concurrency limit",
                                    retry_after=1.0)  # fmt: skip
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
            return
        await self._slots.acquire()

    def release(self) -> None:
        self._slots.release()


class ResilientAdapter:
    """Wraps one registry's adapter; same ``RegistryAdapter`` interface."""

    def __init__(
        self,
        inner: RegistryAdapter,
        operations: Mapping[str, Operation],  # method name -> operation
        policy: ResiliencePolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.inner = inner
        self._idempotent = {name: op.idempotent for name, op in operations.items()}
        self.policy = policy
        self.breaker = CircuitBreaker(policy.failures_to_open, policy.open_s)
        self._bulkhead = _Bulkhead(policy.max_concurrency, policy.max_queue)
        self._clock = clock
        self._jitter = jitter

    async def call(
        self, method: str, request: Message, *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> Message:
        """One call as the breaker counts it: its retries succeed or fail together."""
        deadline = self._clock() + timeout
        now = self._clock()
        if not self.breaker.allow(now):
            raise GatewayError(Reason.REGISTRY_UNAVAILABLE, "The registry is failing; calls are paused",
                               retry_after=self.breaker.retry_after(now))  # fmt: skip
        try:
            answer = await self._with_retries(method, request, deadline, metadata)
        except _BulkheadFull:
            self.breaker.abandon()
            raise
        except GatewayError as exc:
            if exc.reason in FAILURES:
                self.breaker.failure(self._clock())
            else:
                self.breaker.success()  # "not found", "invalid argument": the registry answered
            raise
        except BaseException:
            self.breaker.abandon()
            raise
        self.breaker.success()
        return answer

    async def _with_retries(
        self, method: str, request: Message, deadline: float, metadata: Sequence[tuple[str, str]]
    ) -> Message:
        attempts = 1 + (self.policy.retries if self._idempotent.get(method, False) else 0)
        for attempt in range(attempts):
            try:
                return await self._attempt(method, request, deadline, metadata)
            except _BulkheadFull:
                raise
            except GatewayError as exc:
                delay = self._backoff(attempt)
                last = attempt + 1 >= attempts or exc.reason is not Reason.REGISTRY_UNAVAILABLE
                # A half-open circuit gets one probe, not a probe and its retries.
                if last or self.breaker.state is BreakerState.HALF_OPEN or self._clock() + delay >= deadline:
                    raise
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff(self, attempt: int) -> float:
        return self._jitter() * min(self.policy.backoff_max_s, self.policy.backoff_base_s * 2.0**attempt)

    async def _attempt(
        self, method: str, request: Message, deadline: float, metadata: Sequence[tuple[str, str]]
    ) -> Message:
        await self._bulkhead_wait(deadline)
        try:
            return await self.inner.call(method, request, timeout=deadline - self._clock(), metadata=metadata)
        finally:
            self._bulkhead.release()

    async def _bulkhead_wait(self, deadline: float) -> None:
        left = deadline - self._clock()
        if left <= 0:
            raise GatewayError(Reason.REGISTRY_TIMEOUT, "The caller's deadline leaves no time for the registry")
        if not self._bulkhead.locked():   # the usual case: a slot is free, taken at once: no timer to arm
            await self._bulkhead.acquire()
            return
        try:
            async with asyncio.timeout(left):
                await self._bulkhead.acquire()
        except TimeoutError:
            raise GatewayError(Reason.REGISTRY_TIMEOUT, "No registry slot freed up before the deadline") from None

    async def close(self) -> None:
        await self.inner.close()
