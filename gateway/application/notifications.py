"""Change notifications ("tell us once"), the subscriptions API: ``passerelle.gateway.v1.Subscriptions``.

An agency subscribes to a registry's change events (``event_type``, the change message's name)
for a purpose, with a delivery mode (a signed CloudEvents webhook, or the gRPC stream with
acknowledgements), and keeps a follow list of the persons it serves. Subscribing and following need
a mandate in force for the event's stream and the purpose (deny by default); its limits and the
person's consent are checked per event at delivery time (``notification_delivery``), and so is the
mandate again, so that a revocation stops events not yet delivered. Each person added to or removed
from a follow list is one ``EventKind.ADMIN`` record in that person's history; creating and deleting
a subscription is recorded too. The follow list holds keyed pseudonyms only: no national id is kept in clear.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from gateway._pb.passerelle.gateway.v1 import subscriptions_pb2 as pb
from gateway.application._changes import record_change
from gateway.application.runtime import Gateway
from gateway.application.service import Access, Call, Handler, ServiceBinding
from gateway.core.caller_text import free_text_problem
from gateway.core.change_events import EventStream
from gateway.core.errors import GatewayError, Reason
from gateway.core.identifiers import national_id_problem
from gateway.core.notifications import (
    DeadLetter,
    Subscription,
    signing_secret,
    subscription_tag,
    webhook_url_problem,
)
from gateway.core.ports import NotificationStore

__all__ = ["NotificationSettings", "SubscriptionsApi", "subscriptions_binding"]

SERVICE = "passerelle.gateway.v1.Subscriptions"
_MODES = {pb.DELIVERY_MODE_WEBHOOK: "webhook", pb.DELIVERY_MODE_STREAM: "stream"}
_MODE_ENUM = {v: k for k, v in _MODES.items()}


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    """``[notifications]`` as the use cases need it (``gateway.config.NotificationsSection``)."""

    demo: bool = False
    max_subscriptions: int = 20          # per consumer
    max_follows: int = 100_000           # per subscription
    max_follow_batch: int = 1000         # national ids per Follow / Unfollow / ListFollows call
    max_attempts: int = 8                # webhook attempts before a dead letter
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    lease_s: float = 30.0                # a delivery's lease; a stream event unacknowledged this long is resent
    workers: int = 32                    # webhook deliveries in flight, per process
    per_subscription: int = 4            # of which for one subscription at most
    poll_s: float = 0.2                  # how often the outbox is looked at when idle
    read_batch: int = 200                # events ingested per transaction at most


def subscription_message(sub: Subscription, *, secret: str = "") -> pb.Subscription:
    return pb.Subscription(id=sub.id, consumer=sub.consumer, event_type=sub.event_type, purpose=sub.purpose,
                           delivery=_MODE_ENUM[sub.mode], webhook_url=sub.webhook_url, created_us=sub.created_us,
                           signing_secret=secret, follows=sub.follows)  # fmt: skip


def _letter(d: DeadLetter) -> pb.DeadLetter:
    return pb.DeadLetter(delivery_id=d.id, subscription_id=d.subscription_id, consumer=d.consumer,
                         event_id=d.event_id, event_type=d.event_type, attempts=d.attempts,
                         last_error=d.last_error, failed_us=d.failed_us)  # fmt: skip


class SubscriptionsApi:
    """The handlers; ``on_ack`` tells this process's streams which events were acknowledged."""

    def __init__(self, gateway: Gateway, store: NotificationStore, streams: Sequence[EventStream],
                 settings: NotificationSettings, clock_us: Callable[[], int]) -> None:  # fmt: skip
        self.gateway, self.store, self.settings, self._clock_us = gateway, store, settings, clock_us
        self.types = {s.event_type: s for s in streams}
        self.on_ack: list[Callable[[Subscription, list[int]], None]] = []

    def _consumer(self, call: Call) -> str:
        assert call.principal is not None
        return call.principal.id

    async def owned(self, call: Call, subscription_id: str) -> Subscription:
        """The caller's subscription, or NOT_FOUND (also for another agency's: nothing is revealed)."""
        sub = await self.store.subscription(subscription_id) if subscription_id else None
        if sub is None or sub.consumer != self._consumer(call):
            raise GatewayError(Reason.NOT_FOUND, "No such subscription", field="subscription_id")
        return sub

    def _check_new(self, r: pb.CreateSubscriptionRequest) -> str:
        if r.event_type not in self.types:
            known = ", ".join(sorted(self.types)) or "none configured"
            raise GatewayError(Reason.INVALID_ARGUMENT, f"event_type must be one of: {known}", field="event_type")
        if not r.purpose:
            raise GatewayError(Reason.PURPOSE_MISSING, "purpose is required", field="purpose")
        if r.purpose not in self.gateway.policy.purposes:
            raise GatewayError(Reason.UNKNOWN_PURPOSE, "purpose is not a code of the purposes catalogue",
                               field="purpose")  # fmt: skip
        mode = _MODES.get(r.delivery)
        if mode is None:
            raise GatewayError(Reason.INVALID_ARGUMENT, "delivery must be WEBHOOK or STREAM", field="delivery")
        if mode == "webhook":
            problem = webhook_url_problem(r.webhook_url, demo=self.settings.demo)
            if problem:
                raise GatewayError(Reason.INVALID_ARGUMENT, problem, field="webhook_url")
        elif r.webhook_url:
            raise GatewayError(Reason.INVALID_ARGUMENT, "a stream subscription has no webhook_url", field="webhook_url")
        return mode

    def _mandated(self, consumer: str, event_type: str, purpose: str) -> None:
        """Deny by default: a mandate of ``consumer`` for the event's stream and ``purpose`` must be in
        force to subscribe or follow (its limits and the consent are checked per event, at delivery)."""
        stream = self.types[event_type]
        decision = self.gateway.policy.decide(consumer=consumer, service=stream.full_name, purpose=purpose,
                                              now_us=self._clock_us())  # fmt: skip
        if not decision.allowed:
            raise GatewayError(Reason(decision.reason), f"No mandate in force allows {stream.full_name} for "
                               "this purpose", field="purpose")  # fmt: skip

    async def create(self, r: pb.CreateSubscriptionRequest, call: Call) -> pb.Subscription:
        mode = self._check_new(r)
        consumer = self._consumer(call)
        self._mandated(consumer, r.event_type, r.purpose)
        if len(await self.store.subscriptions(consumer)) >= self.settings.max_subscriptions:
            raise GatewayError(Reason.REQUEST_TOO_LARGE,
                               f"An agency holds at most {self.settings.max_subscriptions} subscriptions")
        sub = Subscription(id="sub_" + secrets.token_urlsafe(12), consumer=consumer, event_type=r.event_type,
                           purpose=r.purpose, mode=mode, webhook_url=r.webhook_url,
                           created_us=self._clock_us())  # fmt: skip
        keyed = self.gateway.pseudonymise
        secret = signing_secret(sub, keyed) if mode == "webhook" else ""
        sub = replace(sub, secret=subscription_tag(sub, keyed))   # the row keeps its MAC, not the secret
        await record_change(self.gateway.audit, self._clock_us, call, service=f"{SERVICE}/CreateSubscription",
                            consumer=consumer, purpose=sub.purpose,
                            extra={"action": "subscribe", "subscription": sub.id, "event_type": sub.event_type,
                                   "delivery": mode})  # fmt: skip
        await self.store.add_subscription(sub)
        return subscription_message(sub, secret=secret)

    async def list_subscriptions(self, r: pb.ListSubscriptionsRequest, call: Call) -> pb.ListSubscriptionsResponse:
        subs = await self.store.subscriptions(self._consumer(call))
        return pb.ListSubscriptionsResponse(subscriptions=[subscription_message(s) for s in subs])

    async def delete(self, r: pb.DeleteSubscriptionRequest, call: Call) -> pb.DeleteSubscriptionResponse:
        sub = await self.owned(call, r.subscription_id)
        await record_change(self.gateway.audit, self._clock_us, call, service=f"{SERVICE}/DeleteSubscription",
                            consumer=sub.consumer, purpose=sub.purpose,
                            extra={"action": "unsubscribe", "subscription": sub.id})  # fmt: skip
        return pb.DeleteSubscriptionResponse(deleted=await self.store.delete_subscription(sub.id))

    def _subjects(self, national_ids: Sequence[str]) -> list[str]:
        if not national_ids:
            raise GatewayError(Reason.INVALID_ARGUMENT, "national_ids is empty", field="national_ids")
        if len(national_ids) > self.settings.max_follow_batch:
            raise GatewayError(Reason.REQUEST_TOO_LARGE,
                               f"At most {self.settings.max_follow_batch} national ids per call", field="national_ids")
        for i, value in enumerate(national_ids):
            if national_id_problem(value) is not None:   # the value itself is never repeated
                raise GatewayError(Reason.INVALID_ARGUMENT, f"national_ids[{i}] is not a national id",
                                   field="national_ids")  # fmt: skip
        return [self.gateway.pseudonymise(v) for v in national_ids]

    async def _record_each(self, call: Call, sub: Subscription, subjects: Sequence[str], action: str) -> None:
        """One record per person, in their own history, before the list changes (fail closed)."""
        await asyncio.gather(*(
            record_change(self.gateway.audit, self._clock_us, call, service=f"{SERVICE}/{action.capitalize()}",
                          consumer=sub.consumer, purpose=sub.purpose, subject=s,
                          extra={"action": action, "subscription": sub.id, "event_type": sub.event_type})
            for s in dict.fromkeys(subjects)))  # fmt: skip

    async def follow(self, r: pb.FollowRequest, call: Call) -> pb.FollowResponse:
        sub = await self.owned(call, r.subscription_id)
        subjects = self._subjects(r.national_ids)
        if sub.event_type in self.types:   # else no event of it is delivered anyway
            self._mandated(sub.consumer, sub.event_type, sub.purpose)
        known, total = await self.store.followed(sub.id, subjects)
        new = [s for s in dict.fromkeys(subjects) if s not in known]
        if total + len(new) > self.settings.max_follows:
            raise GatewayError(Reason.REQUEST_TOO_LARGE,
                               f"A subscription follows at most {self.settings.max_follows} persons "
                               f"({total} now)", field="national_ids")  # fmt: skip
        await self._record_each(call, sub, new, "follow")
        try:
            added, total = await self.store.follow(sub.id, new, self._clock_us(), self.settings.max_follows)
        except ValueError:   # another call filled the list meanwhile
            raise GatewayError(Reason.REQUEST_TOO_LARGE, "The follow list is full", field="national_ids") from None
        return pb.FollowResponse(changed=added, follows=total)

    async def unfollow(self, r: pb.FollowRequest, call: Call) -> pb.FollowResponse:
        sub = await self.owned(call, r.subscription_id)
        subjects = self._subjects(r.national_ids)
        known, _ = await self.store.followed(sub.id, subjects)
        await self._record_each(call, sub, [s for s in subjects if s in known], "unfollow")
        removed, total = await self.store.unfollow(sub.id, subjects)
        return pb.FollowResponse(changed=removed, follows=total)

    async def list_follows(self, r: pb.ListFollowsRequest, call: Call) -> pb.ListFollowsResponse:
        sub = await self.owned(call, r.subscription_id)
        if not r.national_ids:
            return pb.ListFollowsResponse(follows=sub.follows)
        subjects = self._subjects(r.national_ids)
        known, total = await self.store.followed(sub.id, subjects)
        return pb.ListFollowsResponse(follows=total, followed=[n for n, s in zip(r.national_ids, subjects,
                                                                                 strict=True) if s in known])

    async def ack(self, r: pb.AckEventsRequest, call: Call) -> pb.AckEventsResponse:
        sub = await self.owned(call, r.subscription_id)
        if sub.mode != "stream":
            raise GatewayError(Reason.INVALID_ARGUMENT, "only a stream subscription acknowledges events",
                               field="subscription_id")  # fmt: skip
        if len(r.event_ids) > 1000:
            raise GatewayError(Reason.REQUEST_TOO_LARGE, "At most 1000 event ids per call", field="event_ids")
        done = await self.store.ack(sub.id, list(r.event_ids), self._clock_us())
        for listener in self.on_ack:
            listener(sub, done)
        return pb.AckEventsResponse(acknowledged=len(done))

    async def dead_letters(self, r: pb.ListDeadLettersRequest, call: Call) -> pb.ListDeadLettersResponse:
        if r.page_size > 1000:
            raise GatewayError(Reason.INVALID_ARGUMENT, "page_size must be within 0..1000", field="page_size")
        letters = await self.store.dead_letters(r.consumer or None, r.page_size or 100)
        return pb.ListDeadLettersResponse(dead_letters=[_letter(d) for d in letters])

    async def redeliver(self, r: pb.RedeliverRequest, call: Call) -> pb.RedeliverResponse:
        problem = free_text_problem(r.reason) if r.reason else "is required: the log keeps why"
        if problem:
            raise GatewayError(Reason.INVALID_ARGUMENT, f"reason {problem}", field="reason")
        letters = {d.id: d for d in await self.store.dead_letters(None, 100_000)}
        letter = letters.get(r.delivery_id)
        if letter is None:
            raise GatewayError(Reason.NOT_FOUND, "No such dead letter", field="delivery_id")
        await record_change(self.gateway.audit, self._clock_us, call, service=f"{SERVICE}/Redeliver",
                            consumer=letter.consumer,
                            extra={"action": "redeliver", "delivery": str(letter.id), "subscription":
                                   letter.subscription_id, "change_reason": r.reason})  # fmt: skip
        return pb.RedeliverResponse(requeued=await self.store.redeliver(r.delivery_id, self._clock_us()) is not None)


def subscriptions_binding(api: SubscriptionsApi) -> ServiceBinding:
    """The unary methods on both doors; ``StreamEvents`` is served by ``gateway.entrypoints.notifications``."""
    consumer = Access("consumer")
    handlers: dict[str, Handler] = {
        "CreateSubscription": api.create, "ListSubscriptions": api.list_subscriptions,
        "DeleteSubscription": api.delete, "Follow": api.follow, "Unfollow": api.unfollow,
        "ListFollows": api.list_follows, "AckEvents": api.ack, "ListDeadLetters": api.dead_letters,
        "Redeliver": api.redeliver,
    }  # fmt: skip
    access = {name: consumer for name in handlers} | {"ListDeadLetters": Access("staff", "ops"),
                                                       "Redeliver": Access("staff", "admin")}  # fmt: skip
    return ServiceBinding(service=SERVICE, handlers=handlers, access=access, tags=["notifications"])

