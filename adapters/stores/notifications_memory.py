"""Change notifications' state in memory (tests, and the reference for the contract suite).

The same rules as ``notifications_sqlite`` (``gateway.core.ports.NotificationStore``): one
atomic ``ingest``, leases with an owner, order per subscription and subject.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from gateway.core.notifications import (
    DeadLetter,
    Delivery,
    NewDelivery,
    StoredEvent,
    Subscription,
    SubscriptionBacklog,
)

__all__ = ["MemoryNotificationStore"]


@dataclass(slots=True)
class _Row:
    id: int
    new: NewDelivery
    created_us: int
    state: str = "pending"        # pending | delivered | refused | skipped | dead
    attempts: int = 0
    due_us: int = 0
    owner: str = ""
    lease_until_us: int = 0
    audited: bool = False
    last_error: str = ""
    updated_us: int = 0


class MemoryNotificationStore:
    def __init__(self) -> None:
        self._subs: dict[str, Subscription] = {}
        self._follows: dict[str, dict[str, int]] = {}
        self._cursors: dict[str, int] = {}
        self._events: dict[tuple[str, str], StoredEvent] = {}
        self._rows: dict[int, _Row] = {}
        self._keys: set[tuple[str, str, str]] = set()
        self._next = 1

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # --- subscriptions and follows -------------------------------------------------------------

    async def add_subscription(self, sub: Subscription) -> None:
        self._subs[sub.id] = sub
        self._follows.setdefault(sub.id, {})

    def _counted(self, sub: Subscription) -> Subscription:
        return replace(sub, follows=len(self._follows.get(sub.id, {})))

    async def subscriptions(self, consumer: str | None = None) -> Sequence[Subscription]:
        subs = sorted(self._subs.values(), key=lambda s: (s.created_us, s.id))
        return [self._counted(s) for s in subs if consumer is None or s.consumer == consumer]

    async def subscription(self, subscription_id: str) -> Subscription | None:
        sub = self._subs.get(subscription_id)
        return None if sub is None else self._counted(sub)

    async def delete_subscription(self, subscription_id: str) -> bool:
        if self._subs.pop(subscription_id, None) is None:
            return False
        self._follows.pop(subscription_id, None)
        for row_id in [i for i, r in self._rows.items()
                       if r.new.subscription_id == subscription_id and r.state == "pending"]:  # fmt: skip
            del self._rows[row_id]
        return True

    async def follow(self, subscription_id: str, subjects: Sequence[str], now_us: int, limit: int) -> tuple[int, int]:
        follows = self._follows.setdefault(subscription_id, {})
        new = [s for s in dict.fromkeys(subjects) if s not in follows]
        if len(follows) + len(new) > limit:
            raise ValueError(f"a subscription follows at most {limit} persons")
        for s in new:
            follows[s] = now_us
        return len(new), len(follows)

    async def unfollow(self, subscription_id: str, subjects: Sequence[str]) -> tuple[int, int]:
        follows = self._follows.get(subscription_id, {})
        removed = sum(1 for s in set(subjects) if follows.pop(s, None) is not None)
        return removed, len(follows)

    async def followed(self, subscription_id: str, subjects: Sequence[str]) -> tuple[set[str], int]:
        follows = self._follows.get(subscription_id, {})
        return {s for s in subjects if s in follows}, len(follows)

    async def followers(self, event_type: str, subjects: Sequence[str]) -> Mapping[str, set[str]]:
        out: dict[str, set[str]] = {}
        for sub in self._subs.values():
            if sub.event_type != event_type:
                continue
            follows = self._follows.get(sub.id, {})
            for s in subjects:
                if s in follows:
                    out.setdefault(s, set()).add(sub.id)
        return out

    # --- ingest ------------------------------------------------------------------------------

    async def cursor(self, registry: str) -> int:
        return self._cursors.get(registry, 0)

    async def ingest(self, registry: str, cursor: int, events: Sequence[StoredEvent],
                     deliveries: Sequence[NewDelivery]) -> int:  # fmt: skip
        created = 0
        for e in events:
            self._events.setdefault((e.registry, e.event_id), e)
        for d in deliveries:
            key = (d.subscription_id, d.registry, d.event_id)
            if key in self._keys or d.subscription_id not in self._subs:
                continue
            self._keys.add(key)
            event = self._events[(d.registry, d.event_id)]
            self._rows[self._next] = _Row(self._next, d, event.recorded_us)
            self._next += 1
            created += 1
        self._cursors[registry] = max(cursor, self._cursors.get(registry, 0))
        return created

    # --- the outbox --------------------------------------------------------------------------

    def _blocked(self, row: _Row) -> bool:
        return any(r.id < row.id and r.state == "pending" and r.new.subscription_id == row.new.subscription_id
                   and r.new.subject == row.new.subject for r in self._rows.values())  # fmt: skip

    async def lease(self, owner: str, now_us: int, lease_us: int, limit: int, *, mode: str,
                    subscription_id: str = "") -> Sequence[Delivery]:  # fmt: skip
        out: list[Delivery] = []
        for row in sorted(self._rows.values(), key=lambda r: r.id):
            if len(out) >= limit:
                break
            if (row.state != "pending" or row.new.mode != mode or row.due_us > now_us or row.lease_until_us > now_us
                    or (subscription_id and row.new.subscription_id != subscription_id) or self._blocked(row)):
                continue
            row.owner, row.lease_until_us = owner, now_us + lease_us
            out.append(self._delivery(row))
        return out

    def _delivery(self, row: _Row) -> Delivery:
        d = row.new
        return Delivery(row.id, d.subscription_id, d.consumer, d.mode, self._events[(d.registry, d.event_id)],
                        row.attempts, row.audited, row.created_us)

    def _held(self, delivery_id: int, owner: str) -> _Row | None:
        row = self._rows.get(delivery_id)
        return row if row is not None and row.state == "pending" and row.owner == owner else None

    async def release(self, delivery_id: int, owner: str, due_us: int) -> bool:
        row = self._held(delivery_id, owner)
        if row is None:
            return False
        row.due_us, row.owner, row.lease_until_us = due_us, "", 0
        return True

    async def unacked(self, subscription_id: str, owner: str, delivery_ids: Sequence[int]) -> set[int]:
        return {i for i in delivery_ids if (r := self._held(i, owner)) is not None
                and r.new.subscription_id == subscription_id}  # fmt: skip

    async def mark_audited(self, delivery_id: int, owner: str) -> bool:
        row = self._held(delivery_id, owner)
        if row is None:
            return False
        row.audited = True
        return True

    async def finish(self, delivery_id: int, owner: str, state: str, now_us: int) -> bool:
        row = self._held(delivery_id, owner)
        if row is None:
            return False
        row.state, row.owner, row.lease_until_us, row.updated_us = state, "", 0, now_us
        return True

    async def retry_later(self, delivery_id: int, owner: str, due_us: int, error: str) -> bool:
        row = self._held(delivery_id, owner)
        if row is None:
            return False
        row.attempts += 1
        row.due_us, row.last_error, row.owner, row.lease_until_us = due_us, error, "", 0
        return True

    async def dead(self, delivery_id: int, owner: str, error: str, now_us: int) -> bool:
        row = self._held(delivery_id, owner)
        if row is None:
            return False
        row.attempts += 1
        row.state, row.last_error, row.owner, row.lease_until_us, row.updated_us = "dead", error, "", 0, now_us
        return True

    async def ack(self, subscription_id: str, event_ids: Sequence[str], now_us: int) -> list[int]:
        wanted, done = set(event_ids), []
        for row in self._rows.values():
            if (row.new.subscription_id == subscription_id and row.new.event_id in wanted
                    and row.state == "pending" and row.new.mode == "stream" and row.owner and row.audited):
                row.state, row.owner, row.lease_until_us, row.updated_us = "delivered", "", 0, now_us
                done.append(row.id)
        return done

    def _dead_letter(self, row: _Row) -> DeadLetter:
        d = row.new
        event = self._events[(d.registry, d.event_id)]
        return DeadLetter(row.id, d.subscription_id, d.consumer, d.event_id, event.event_type, row.attempts,
                          row.last_error, row.updated_us)

    async def dead_letters(self, consumer: str | None, limit: int) -> Sequence[DeadLetter]:
        rows = [r for r in sorted(self._rows.values(), key=lambda r: r.id)
                if r.state == "dead" and (consumer is None or r.new.consumer == consumer)]  # fmt: skip
        return [self._dead_letter(r) for r in rows[:limit]]

    async def redeliver(self, delivery_id: int, now_us: int) -> DeadLetter | None:
        row = self._rows.get(delivery_id)
        if row is None or row.state != "dead":
            return None
        letter = self._dead_letter(row)
        row.state, row.attempts, row.due_us, row.last_error = "pending", 0, now_us, ""
        return letter

    async def purge(self, before_us: int) -> int:
        ended = [i for i, r in self._rows.items()
                 if r.state in ("delivered", "refused", "skipped") and r.updated_us < before_us]  # fmt: skip
        for i in ended:
            del self._rows[i]
        needed = {(r.new.registry, r.new.event_id) for r in self._rows.values()}
        for key in [k for k in self._events if k not in needed]:
            del self._events[key]
        return len(ended)

    async def backlog(self) -> Sequence[SubscriptionBacklog]:
        out = []
        for sub in self._subs.values():
            rows = [r for r in self._rows.values() if r.new.subscription_id == sub.id]
            pending = [r.created_us for r in rows if r.state == "pending"]
            out.append(SubscriptionBacklog(sub.id, sub.consumer, len(pending), min(pending, default=0),
                                           sum(1 for r in rows if r.state == "dead")))  # fmt: skip
        return out
