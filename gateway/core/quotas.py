"""Admission control: a per-consumer token bucket (rate) and in-flight counter (concurrency).

Pure state machines; the time is passed in. A refusal is a ``GatewayError``
(``RATE_LIMITED`` / ``CONCURRENCY_LIMITED``) with ``retry_after`` set, which
both front doors render (``Retry-After`` header, gRPC ``RetryInfo``). One
consumer's buckets and counters are its own: a flood by one never spends
another's allowance.

Citizens and staff have quotas too (``PrincipalQuotas``: one bucket per person,
per process), and so do callers that are not authenticated, per client
address (``AddressQuotas``, applied by the front doors): every call is charged to its
address when it arrives and given back only once its token and sender verified
(``authenticated``), so that a header that merely looks like a token buys nothing. Both keep their buckets in a
bounded LRU: a flood of new names or addresses evicts the idlest buckets (which
were full anyway), it does not grow memory.

Several gateway processes share one quota by each admitting a *share* of it
(``set_shares``): ``fair_shares`` is the pure decision, computed from every live
process's recent demand (the heartbeat board, ``gateway/quota_sync.py``). With
one process every share is 1 and nothing changes. See docs/scaling.md for the bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass

from cachetools import LRUCache

from gateway.core.errors import GatewayError, Reason

__all__ = [
    "SHARE_FLOOR", "AddressQuotas", "Admission", "KeyedBuckets", "PrincipalQuotas", "Quota", "TokenBucket",
    "authenticated", "fair_shares", "local_concurrency", "refund_when_authenticated", "refunds_ended",
]

#: Part of a consumer's quota split evenly over the live processes whatever the demand, so that a
#: process the consumer's traffic moves to can admit at once while the next heartbeats catch up.
SHARE_FLOOR = 0.2


@dataclass(frozen=True, slots=True)
class Quota:
    """``rate_per_s`` sustained requests, ``burst`` at once, ``max_concurrent`` in flight (0 = no limit)."""

    rate_per_s: float
    burst: int
    max_concurrent: int


class TokenBucket:
    """Classic token bucket: ``take(now)`` returns 0.0 when admitted, else the seconds to wait."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, float(max(1.0, burst))
        self._tokens, self._last = self.burst, now

    def resize(self, rate: float, burst: float, now: float) -> None:
        """New rate and burst from ``now`` on; tokens already held are kept up to the new burst, never added."""
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        self.rate, self.burst = rate, float(max(1.0, burst))
        self._tokens = min(self._tokens, self.burst)

    def give_back(self) -> None:
        """Undo the last admitting ``take`` (a peek)."""
        self._tokens = min(self.burst, self._tokens + 1.0)

    def take(self, now: float) -> float:
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate if self.rate > 0 else math.inf


def fair_shares(
    me: str, demand: Mapping[str, Mapping[str, float]], floor: float = SHARE_FLOOR
) -> tuple[float, dict[str, float]]:
    """This process's share of each consumer's quota, from every live process's recent demand.

    ``demand`` maps each live process (``me`` included or not) to ``{consumer: requests/s asked of it}``.
    Returns ``(default, per_consumer)``: ``default`` (1/N) for consumers nobody asked for, and for the
    others ``floor/N + (1 - floor) * mine / total``. Over the N processes each consumer's shares sum
    to exactly 1 when they all computed them from the same rows, so together they admit its rate once.
    """
    rows = dict(demand)
    rows.setdefault(me, {})
    n = len(rows)
    default = 1.0 / n
    mine = rows[me]
    totals: dict[str, float] = {}
    for row in rows.values():
        for consumer, d in row.items():
            if d > 0:
                totals[consumer] = totals.get(consumer, 0.0) + d
    per = {c: floor * default + (1.0 - floor) * max(0.0, mine.get(c, 0.0)) / total for c, total in totals.items()}
    return default, per


def local_concurrency(max_concurrent: int, share: float) -> int:
    """This process's part of a concurrency limit (0: none); at least 1 so that every process can serve."""
    if not max_concurrent or share >= 1.0:
        return max_concurrent
    return max(1, math.floor(max_concurrent * share + 1e-9))


class Admission:
    """Per-consumer admission: ``acquire`` before the work, ``release`` after it."""

    def __init__(self, default: Quota, per_consumer: Mapping[str, Quota] | None = None) -> None:
        self._default = default
        self._quotas = dict(per_consumer or {})
        self._buckets: dict[str, TokenBucket] = {}
        self._in_flight: dict[str, int] = {}
        self._default_share = 1.0
        self._shares: dict[str, float] = {}
        self._asked: dict[str, int] = {}

    def quota(self, consumer: str) -> Quota:
        return self._quotas.get(consumer, self._default)

    def in_flight(self, consumer: str) -> int:
        return self._in_flight.get(consumer, 0)

    def share(self, consumer: str) -> float:
        """The part of ``consumer``'s quota this process admits (1.0 when it is alone)."""
        return self._shares.get(consumer, self._default_share)

    def set_shares(self, default: float, per_consumer: Mapping[str, float], now: float) -> None:
        """Admit this share of each quota from ``now`` on (see ``fair_shares``); buckets are resized, not refilled."""
        self._default_share, self._shares = default, dict(per_consumer)
        for consumer, bucket in self._buckets.items():
            q, share = self.quota(consumer), self.share(consumer)
            bucket.resize(q.rate_per_s * share, q.burst * share, now)

    def take_demand(self) -> dict[str, int]:
        """Requests asked per consumer (admitted or not) since the last call."""
        asked, self._asked = self._asked, {}
        return asked

    def acquire(self, consumer: str, now: float) -> None:
        """Refuse (``GatewayError``), or count one more request in flight; pair with ``release``."""
        q = self.quota(consumer)
        self._asked[consumer] = self._asked.get(consumer, 0) + 1
        share = self._shares.get(consumer, self._default_share)
        if q.max_concurrent and self._in_flight.get(consumer, 0) >= local_concurrency(q.max_concurrent, share):
            raise GatewayError(Reason.CONCURRENCY_LIMITED, retry_after=1.0)
        if q.rate_per_s > 0:
            bucket = self._buckets.get(consumer)
            if bucket is None:
                bucket = self._buckets[consumer] = TokenBucket(q.rate_per_s * share, q.burst * share, now)
            wait = bucket.take(now)
            if wait:
                raise GatewayError(Reason.RATE_LIMITED, retry_after=float(max(1, math.ceil(wait))))
        self._in_flight[consumer] = self._in_flight.get(consumer, 0) + 1

    def release(self, consumer: str) -> None:
        self._in_flight[consumer] -= 1

    def would_wait(self, consumer: str, now: float) -> float:
        """Seconds before ``acquire`` would admit one more request (0.0: now), taking nothing.

        For callers that pace themselves to the quota (a bulk look-up's items) rather than be refused.
        """
        q, share = self.quota(consumer), self.share(consumer)
        if q.max_concurrent and self._in_flight.get(consumer, 0) >= local_concurrency(q.max_concurrent, share):
            return 0.01
        bucket = self._buckets.get(consumer)
        if q.rate_per_s <= 0 or bucket is None:
            return 0.0
        wait = bucket.take(now)
        if not wait:
            bucket.give_back()
        return wait


class KeyedBuckets:
    """One token bucket per key (a person, a client address), at most ``max_keys`` of them (LRU)."""

    def __init__(self, rate_per_s: float, burst: int, *, max_keys: int = 100_000) -> None:
        self.rate, self.burst = rate_per_s, burst
        self._buckets: LRUCache[str, TokenBucket] = LRUCache(maxsize=max_keys)

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, key: str, now: float) -> float:
        """Take one token for ``key``: 0.0 when admitted, else the seconds until one is back (nothing taken)."""
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def would_wait(self, key: str, now: float) -> float:
        """As ``wait`` without taking: for limits charged only afterwards (failed authentications)."""
        bucket = self._buckets.get(key)
        if bucket is None or self.rate <= 0:
            return 0.0
        wait = bucket.take(now)
        if not wait:
            bucket.give_back()
        return wait

    def give_back(self, key: str) -> None:
        """Return one token taken for ``key`` (nothing if its bucket was evicted meanwhile)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.give_back()

    def take(self, key: str, now: float) -> None:
        """Refuse with ``RATE_LIMITED`` (and when to retry) once ``key`` has spent its allowance."""
        wait = self.wait(key, now)
        if wait:
            raise GatewayError(Reason.RATE_LIMITED, retry_after=float(max(1, math.ceil(wait))))


class PrincipalQuotas:
    """Rate quotas of citizens and staff, per person, by kind (``citizen``, ``staff``); other kinds pass."""

    def __init__(self, per_kind: Mapping[str, KeyedBuckets]) -> None:
        self._per_kind = dict(per_kind)

    def take(self, kind: str, principal: str, now: float) -> None:
        buckets = self._per_kind.get(kind)
        if buckets is not None:
            buckets.take(principal, now)


#: The current call's refund of its address charge, set by a front door around the call.
_REFUND: ContextVar[Callable[[], None] | None] = ContextVar("passerelle_address_refund", default=None)


def refund_when_authenticated(refund: Callable[[], None]) -> Token[Callable[[], None] | None]:
    """From now on in this context (one call's task), ``authenticated()`` calls ``refund``, at most once.

    The front door may end it early with ``_REFUND.reset(token)`` (``refunds_ended``)."""
    done = False

    def once() -> None:
        nonlocal done
        if not done:
            done = True
            refund()

    return _REFUND.set(once)


def refunds_ended(token: Token[Callable[[], None] | None]) -> None:
    _REFUND.reset(token)


def authenticated() -> None:
    """The current call's token and sender binding verified: its address charge is given back."""
    refund = _REFUND.get()
    if refund is not None:
        refund()


class AddressQuotas:
    """Per client address: every call until its token verified, and failed authentications.

    ``admit`` refuses an address whose failed authentications used up their allowance (whatever
    it sends now, token or not), then charges the call to ``anonymous``: a front door gives that
    charge back (``refund``) only once the call's token verified (``authenticated``), so an
    ``authorization`` header that verifies nothing (``x``) is charged like no header at all.
    ``failed`` charges a refusal by authentication.
    """

    def __init__(self, anonymous: KeyedBuckets, failed_auth: KeyedBuckets) -> None:
        self.anonymous, self.failed_auth = anonymous, failed_auth

    def admit(self, address: str, *, now: float) -> None:
        wait = self.failed_auth.would_wait(address, now)
        if wait:
            raise GatewayError(Reason.RATE_LIMITED, "Too many failed authentications from this address",
                               retry_after=float(max(1, math.ceil(wait))))
        self.anonymous.take(address, now)

    def refund(self, address: str) -> None:
        self.anonymous.give_back(address)

    def failed(self, address: str, now: float) -> None:
        self.failed_auth.wait(address, now)
