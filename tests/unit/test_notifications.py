"""Change notifications' use cases in-process (``gateway.application.notification_delivery``), with fakes:
the in-memory outbox, audit log and consents, a fake webhook sender. No sockets."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import cast

import pytest

from adapters.stores.audit_memory import InMemoryAuditLog
from adapters.stores.consent_memory import InMemoryConsentStore
from adapters.stores.notifications_memory import MemoryNotificationStore
from consent import Mandate, Policy, Purpose
from consent.model import Consent
from gateway._pb.passerelle.options.v1 import options_pb2
from gateway._pb.registry.population.v1 import population_pb2 as pop
from gateway.application.notification_delivery import Deliverer, EventReader, NotificationStats
from gateway.application.notifications import NotificationSettings
from gateway.application.runtime import Gateway
from gateway.core.change_events import load_event_streams
from gateway.core.errors import GatewayError, Reason
from gateway.core.notifications import Subscription, subscription_tag
from gateway.core.ports import AuditQuery, WebhookResult
from gateway.core.types import Outcome, StoredAuditRecord

SERVICE = "registry.population.v1.PopulationRegistry/WatchChanges"
EVENT_TYPE = "registry.population.v1.PersonChanged"
NID = "1990010112345"
STREAM = load_event_streams(["registry.population.v1.PopulationRegistry"])[SERVICE]


class FakeGateway:
    """What the delivery use case reads from the running gateway."""

    def __init__(self, mandates: Sequence[Mandate]) -> None:
        self.policy = Policy.of([Purpose("student-aid", {"en": "Student aid"}, {})], mandates)
        self.consents = InMemoryConsentStore()
        self.audit = InMemoryAuditLog()

    @staticmethod
    def pseudonymise(value: str) -> str:
        return "p-" + value


class FakeSender:
    def __init__(self, audit: InMemoryAuditLog) -> None:
        self.sent: list[tuple[str, str]] = []
        self.secrets: list[str] = []
        self.events: list[dict[str, object]] = []
        self.results: dict[str, WebhookResult] = {}
        self.hang: set[str] = set()
        self.recorded_before_send: list[bool] = []
        self._audit = audit

    async def send(self, url: str, secret: str, event: dict[str, object], event_id: str) -> WebhookResult:
        self.secrets.append(secret)
        self.events.append(event)
        records = await self._audit.query(AuditQuery(limit=1000))
        self.recorded_before_send.append(any(r.record.extra.get("event_id") == event_id for r in records))
        if url in self.hang:
            await asyncio.sleep(3600)
        self.sent.append((url, event_id))
        return self.results.get(url, WebhookResult(True, status=204))

    async def close(self) -> None:
        return None


def _mandate(**kw: object) -> Mandate:
    base: dict[str, object] = {"id": "m", "consumer": "cedies", "service": SERVICE,
                               "purposes": frozenset({"student-aid"}), "legal_basis": "A6-1-e",
                               "fields": frozenset({"given_names", "address"})}  # fmt: skip
    return Mandate(**(base | kw))  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


@dataclasses.dataclass
class World:
    gateway: FakeGateway
    store: MemoryNotificationStore
    sender: FakeSender
    reader: EventReader
    deliverer: Deliverer
    clock: Clock
    sequence: int = 0

    async def subscribe(self, sub_id: str = "sub_1", url: str = "https://a.example/hook", *subjects: str) -> None:
        sub = Subscription(sub_id, "cedies", EVENT_TYPE, "student-aid", "webhook", url, created_us=1)
        await self.add(sub)
        await self.store.follow(sub_id, [self.gateway.pseudonymise(s) for s in subjects or (NID,)], 1, 100)

    async def add(self, sub: Subscription) -> None:
        """As ``CreateSubscription`` keeps it: with its integrity tag."""
        tag = subscription_tag(sub, self.gateway.pseudonymise)
        await self.store.add_subscription(dataclasses.replace(sub, secret=tag))

    async def change(self, nid: str = NID) -> str:
        self.sequence += 1
        change = pop.PersonChanged(national_id=nid, changed=[options_pb2.DATA_CATEGORY_ADDRESS],
                                   person=pop.Person(national_id=nid, given_names="Anne", birth_place="Esch",
                                                     address=pop.Address(street="rue de la Gare")))  # fmt: skip
        envelope = pop.PersonChangeEvent(sequence=self.sequence, event_id=f"rnpp-{self.sequence}", change=change)
        await self.reader.ingest([envelope])
        return envelope.event_id

    async def records(self) -> list[StoredAuditRecord]:
        return list(await self.gateway.audit.query(AuditQuery(limit=1000)))


def _world(*mandates: Mandate, **settings: object) -> World:
    fake = FakeGateway(mandates or (_mandate(),))
    gateway = cast(Gateway, fake)
    store, clock, stats = MemoryNotificationStore(), Clock(), NotificationStats()
    conf = NotificationSettings(**({"max_attempts": 3, "retry_base_s": 1.0, "poll_s": 0.01} | settings))  # type: ignore[arg-type]
    sender = FakeSender(fake.audit)
    reader = EventReader("rnpp", STREAM, cast(object, None), store, gateway, conf, stats, clock)  # type: ignore[arg-type]
    deliverer = Deliverer(gateway, store, sender, {"rnpp": ("rnpp", STREAM)}, conf, stats, clock)
    return World(fake, store, sender, reader, deliverer, clock)


async def test_a_followed_persons_change_is_recorded_then_sent_once() -> None:
    w = _world()
    await w.subscribe()
    event_id = await w.change()
    assert await w.deliverer.deliver_due() == 1
    assert w.sender.sent == [("https://a.example/hook", event_id)]
    assert w.sender.recorded_before_send == [True]
    (record,) = [r.record for r in await w.records()]
    assert (record.outcome, record.subject, set(record.fields)) == (Outcome.OK, f"p-{NID}", {"given_names", "address"})
    assert await w.deliverer.deliver_due() == 0   # delivered: never again


async def test_events_of_persons_nobody_follows_are_not_kept() -> None:
    w = _world()
    await w.subscribe()
    await w.change("2000010112345")
    assert await w.deliverer.deliver_due() == 0
    assert w.store._events == {}
    assert await w.store.cursor("rnpp") == 1   # read all the same: the cursor moved on


async def test_a_mandate_revoked_between_event_and_delivery_stops_it_and_is_recorded_as_refused() -> None:
    w = _world()
    await w.subscribe()
    await w.change()
    w.gateway.policy = Policy.of(w.gateway.policy.purposes.values(), [])   # revoked before delivery
    await w.deliverer.deliver_due()
    assert w.sender.sent == []
    (record,) = [r.record for r in await w.records()]
    assert (record.outcome, record.reason, record.fields) == (Outcome.REFUSED, "NO_MANDATE", ())
    assert await w.deliverer.deliver_due() == 0


async def test_a_consent_revoked_between_event_and_delivery_stops_it_and_is_recorded_as_refused() -> None:
    w = _world(_mandate(legal_basis="A6-1-a"))
    await w.gateway.consents.add(Consent("c1", f"p-{NID}", "cedies", "student-aid", granted_us=1))
    await w.subscribe()
    await w.change()
    await w.change()
    await w.deliverer.deliver_due()   # the first one, while the consent holds
    assert len(w.sender.sent) == 1
    await w.gateway.consents.revoke("c1", f"p-{NID}", w.clock.now)
    w.clock.now += 1
    await w.deliverer.deliver_due()   # the second one, after the revocation
    assert len(w.sender.sent) == 1
    outcomes = [(r.record.outcome, r.record.reason, r.record.consent_id) for r in await w.records()]
    assert outcomes == [(Outcome.OK, "", "c1"), (Outcome.REFUSED, "CONSENT_REVOKED", "")]


async def test_no_audit_record_means_nothing_is_sent() -> None:
    w = _world()
    await w.subscribe()
    await w.change()
    w.gateway.audit.broken = True
    await w.deliverer.deliver_due()
    assert w.sender.sent == []
    w.gateway.audit.broken = False
    w.clock.now += 60_000_000   # the lease ran out: tried again
    await w.deliverer.deliver_due()
    assert len(w.sender.sent) == 1


async def test_failures_are_retried_with_backoff_then_dead_lettered_and_redeliverable() -> None:
    w = _world()
    await w.subscribe()
    await w.change()
    w.sender.results["https://a.example/hook"] = WebhookResult(False, "HTTP 503", 503)
    for _ in range(3):
        assert await w.deliverer.deliver_due() == 1
        assert await w.deliverer.deliver_due() == 0   # not due before its backoff
        w.clock.now += 10_000_000
    (letter,) = await w.store.dead_letters(None, 10)
    assert (letter.attempts, letter.last_error) == (3, "HTTP 503")
    assert len([r for r in await w.records()]) == 1   # one record, however many attempts
    del w.sender.results["https://a.example/hook"]
    assert await w.store.redeliver(letter.id, w.clock.now) is not None
    assert await w.deliverer.deliver_due() == 1
    assert len(w.sender.sent) == 4 and await w.store.dead_letters(None, 10) == []


async def test_events_of_one_person_are_delivered_in_order() -> None:
    w = _world()
    await w.subscribe()
    first, second = await w.change(), await w.change()
    w.sender.results["https://a.example/hook"] = WebhookResult(False, "timeout")
    await w.deliverer.deliver_due()
    assert w.sender.sent == [("https://a.example/hook", first)]   # the second waits for the first
    del w.sender.results["https://a.example/hook"]
    w.clock.now += 10_000_000
    await w.deliverer.deliver_due()
    await w.deliverer.deliver_due()
    assert [e for _, e in w.sender.sent] == [first, first, second]


async def test_a_hanging_endpoint_does_not_block_another_subscriber() -> None:
    w = _world(workers=4, per_subscription=1)
    await w.subscribe("slow", "https://slow.example/hook", NID, "2000010112345", "2001010112345")
    await w.subscribe("fast", "https://fast.example/hook", "2002010112345")
    w.sender.hang.add("https://slow.example/hook")
    for nid in (NID, "2000010112345", "2001010112345", "2002010112345"):
        await w.change(nid)
    task = asyncio.create_task(w.deliverer.run_webhooks())
    try:
        async with asyncio.timeout(2):
            while not any(url == "https://fast.example/hook" for url, _ in w.sender.sent):
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert all(url != "https://slow.example/hook" for url, _ in w.sender.sent)


async def test_the_stream_yields_recorded_events_and_waits_for_acknowledgement() -> None:
    w = _world()
    await w.add(Subscription("s", "cedies", EVENT_TYPE, "student-aid", "stream", created_us=1))
    await w.store.follow("s", [f"p-{NID}"], 1, 10)
    event_id = await w.change()
    sub = await w.store.subscription("s")
    assert sub is not None
    stream = w.deliverer.stream(sub, 10, lambda: None)
    message = await asyncio.wait_for(anext(stream), 2)
    assert message.id == event_id and message.subject == NID
    assert [r.record.extra["delivery"] for r in await w.records()] == ["stream"]
    assert await w.store.ack("s", [event_id], w.clock.now) != []
    await stream.aclose()


async def test_a_revoked_token_stops_the_stream_before_anything_is_recorded() -> None:
    w = _world()
    await w.add(Subscription("s", "cedies", EVENT_TYPE, "student-aid", "stream", created_us=1))
    await w.store.follow("s", [f"p-{NID}"], 1, 10)
    await w.change()
    sub = await w.store.subscription("s")
    assert sub is not None

    def revoked() -> None:
        raise GatewayError(Reason.TOKEN_REVOKED)

    with pytest.raises(GatewayError):
        await anext(w.deliverer.stream(sub, 10, revoked))
    assert await w.records() == []


async def test_a_worker_that_lost_its_lease_sends_nothing() -> None:
    w = _world()
    await w.subscribe()
    await w.change()
    (d,) = await w.store.lease("other-worker", w.clock.now, 1_000_000, 10, mode="webhook")
    assert await w.deliverer.prepare(d, "a-worker-whose-lease-ran-out") is None
    (again,) = await w.store.lease("x", w.clock.now + 2_000_000, 1_000_000, 10, mode="webhook")
    assert not again.audited   # the owner's attempt records it (the stale one's record stays, as evidence)


async def test_a_sender_that_raises_counts_as_a_failed_attempt_and_ends_as_a_dead_letter() -> None:
    """Not a lease that runs out and comes back for ever, holding back the person's later events."""
    w = _world()
    await w.subscribe()
    await w.change()

    async def raising(url: str, secret: str, event: dict[str, object], event_id: str) -> WebhookResult:
        raise UnicodeEncodeError("ascii", "é", 0, 1, "no")

    w.sender.send = raising  # type: ignore[method-assign]
    for _ in range(3):   # max_attempts in this world
        assert await w.deliverer.deliver_due() == 1
        w.clock.now += 10_000_000   # past the backoff, well within lease_s: no lease ran out
    (letter,) = await w.store.dead_letters(None, 10)
    assert (letter.attempts, letter.last_error) == (3, "internal error (UnicodeEncodeError)")


async def test_a_stored_change_that_cannot_be_read_is_a_dead_letter_and_the_stream_goes_on() -> None:
    w = _world()
    await w.add(Subscription("s", "cedies", EVENT_TYPE, "student-aid", "stream", created_us=1))
    await w.store.follow("s", [f"p-{NID}", "p-2000010112345"], 1, 10)
    broken = await w.change()
    key = ("rnpp", broken)
    w.store._events[key] = dataclasses.replace(w.store._events[key], change=b"\xff\xff\xff")   # garbage in the store
    later = await w.change("2000010112345")
    sub = await w.store.subscription("s")
    assert sub is not None
    stream = w.deliverer.stream(sub, 10, lambda: None)
    message = await asyncio.wait_for(anext(stream), 2)
    assert message.id == later
    await stream.aclose()
    (letter,) = await w.store.dead_letters(None, 10)
    assert (letter.event_id, letter.last_error) == (broken, "internal error (DecodeError)")


async def test_a_notification_under_an_embargoed_mandate_is_hidden_from_the_person_as_a_look_up_would_be() -> None:
    """A mandate's hidden_days (an investigation) hides its exchanges from the citizen's page for a while:
    a notification under it, delivered or refused for want of consent, must not show the investigation."""
    w = _world(_mandate(hidden_days=30, hidden_reason="tax-investigation"))
    await w.subscribe()
    await w.change()
    await w.deliverer.deliver_due()
    (record,) = [r.record for r in await w.records()]
    assert (record.outcome, record.hidden_until_us, record.hidden_reason) == (
        Outcome.OK, w.clock.now + 30 * 86_400_000_000, "tax-investigation")


async def test_a_notification_refused_for_want_of_consent_under_an_embargoed_mandate_is_hidden_too() -> None:
    w = _world(_mandate(legal_basis="A6-1-a", hidden_days=30, hidden_reason="tax-investigation"))
    await w.subscribe()
    await w.change()
    await w.deliverer.deliver_due()
    (record,) = [r.record for r in await w.records()]
    assert (record.outcome, record.hidden_until_us) == (Outcome.REFUSED, w.clock.now + 30 * 86_400_000_000)
