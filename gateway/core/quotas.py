"""Admission control: a per-consumer token bucket (rate) and in-flight counter (concurrency).

Pure state machines; the time is passed in. A refusal is a ``GatewayError``
(``RATE_LIMITED`` / ``CONCURRENCY_LIMITED``) with ``retry_after`` set, which
both front doors render (``Retry-After`` header, gRPC ``RetryInfo``). One
consumer's buckets and counters are its own: a flood by one never spends
another's allowance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.core.errors import GatewayError, Reason

__all__ = ["Admission", "Quota", "TokenBucket"]


@dataclass(frozen=True, slots=True)
class Quota:
    """``rate_per_s`` sustained requests, ``burst`` at once, ``max_concurrent`` in flight (0 = no limit)."""

    rate_per_s: float
    burst: int
    max_concurrent: int


class TokenBucket:
    """Classic token bucket: ``take(now)`` returns 0.0 when admitted, else the seconds to wait."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, float(max(1, burst))
        self._tokens, self._last = self.burst, now

    def take(self, now: float) -> float:
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate if self.rate > 0 else math.inf


class Admission:
    """Per-consumer admission: ``acquire`` before the work, ``release`` after it."""

    def __init__(self, default: Quota, per_consumer: Mapping[str, Quota] | None = None) -> None:
        self._default = default
        self._quotas = dict(per_consumer or {})
        self._buckets: dict[str, TokenBucket] = {}
        self._in_flight: dict[str, int] = {}

    def quota(self, consumer: str) -> Quota:
        return self._quotas.get(consumer, self._default)

    def in_flight(self, consumer: str) -> int:
        return self._in_flight.get(consumer, 0)

    def acquire(self, consumer: str, now: float) -> None:
        """Refuse (``GatewayError``), or count one more request in flight; pair with ``release``."""
        q = self.quota(consumer)
        if q.max_concurrent and self._in_flight.get(consumer, 0) >= q.max_concurrent:
            raise GatewayError(Reason.CONCURRENCY_LIMITED, retry_after=1.0)
        if q.rate_per_s > 0:
            bucket = self._buckets.get(consumer)
            if bucket is None:
                bucket = self._buckets[consumer] = TokenBucket(q.rate_per_s, q.burst, now)
            wait = bucket.take(now)
            if wait:
                raise GatewayError(Reason.RATE_LIMITED, retry_after=float(max(1, math.ceil(wait))))
        self._in_flight[consumer] = self._in_flight.get(consumer, 0) + 1

    def release(self, consumer: str) -> None:
        self._in_flight[consumer] -= 1
