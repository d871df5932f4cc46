"""Change notifications against an operator with write access to the SQLite outbox (not to the gateway's
keys): what a row says about whose change it is must not decide whose history records the notification,
nor whose consent allows it. The person is the one the change message names (docs/decisions/0009)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from adapters.stores.notifications_sqlite import SqliteNotificationStore
from consent.model import Consent
from gateway._pb.passerelle.gateway.v1 import subscriptions_pb2 as pb
from gateway._pb.passerelle.options.v1 import options_pb2
from gateway._pb.registry.population.v1 import population_pb2 as pop
from gateway.application.notification_delivery import Deliverer, EventReader, NotificationStats
from gateway.application.notifications import NotificationSettings, SubscriptionsApi
from gateway.application.runtime import Gateway
from gateway.application.service import Call
from gateway.core.auth import Principal
from gateway.core.notifications import Subscription, subscription_tag
from gateway.core.pipeline import CallContext
from gateway.core.ports import AuditQuery
from gateway.core.types import EventKind, Outcome
from tests.unit.test_notifications import EVENT_TYPE, NID, STREAM, FakeGateway, FakeSender, _mandate

OTHER = "1985020312345"
_CALL = Call(Principal("consumer", "cedies", "demo-agencies", "jti", 0.0, frozenset(), {}), CallContext("rest", None))


@pytest.mark.asyncio
async def test_a_rewritten_subject_in_the_outbox_neither_borrows_another_persons_consent_nor_hides_the_record(
    tmp_path: Path,
) -> None:
    fake = FakeGateway([_mandate(legal_basis="A6-1-a")])   # a mandate that needs the person's consent
    await fake.consents.add(Consent("c-other", f"p-{OTHER}", "cedies", "student-aid", granted_us=1))
    store = SqliteNotificationStore(tmp_path / "ntf.db")
    await store.start()
    try:
        sub = Subscription("sub_1", "cedies", EVENT_TYPE, "student-aid", "webhook", "https://a.example/hook")
        await store.add_subscription(replace(sub, secret=subscription_tag(sub, fake.pseudonymise)))
        await store.follow("sub_1", [f"p-{NID}"], 1, 10)
        settings, stats, gateway = NotificationSettings(), NotificationStats(), cast(Gateway, fake)
        reader = EventReader("rnpp", STREAM, cast(object, None), store, gateway, settings, stats,  # type: ignore[arg-type]
                             lambda: 1_000_000)  # fmt: skip
        change = pop.PersonChanged(national_id=NID, changed=[options_pb2.DATA_CATEGORY_ADDRESS],
                                   person=pop.Person(national_id=NID, address=pop.Address(street="rue Neuve")))
        await reader.ingest([pop.PersonChangeEvent(sequence=1, event_id="rnpp-1", change=change)])
        with sqlite3.connect(tmp_path / "ntf.db") as db:   # the operator: NID's change, filed under OTHER
            db.execute("UPDATE ntf_events SET subject = ?", (f"p-{OTHER}",))
            db.execute("UPDATE ntf_outbox SET subject = ?", (f"p-{OTHER}",))
        sender = FakeSender(fake.audit)
        deliverer = Deliverer(gateway, store, sender, {"rnpp": ("rnpp", STREAM)}, settings, stats, lambda: 2_000_000)
        await deliverer.deliver_due()
        assert sender.sent == []   # NID gave no consent; OTHER's does not cover NID's data
        (record,) = [r.record for r in await fake.audit.query(AuditQuery(limit=10))]
        assert (record.subject, record.outcome) == (f"p-{NID}", Outcome.REFUSED)   # in NID's own history
    finally:
        await store.close()


async def _subscribed_through_the_api(tmp_path: Path) -> tuple[FakeGateway, SqliteNotificationStore, str]:
    fake = FakeGateway([_mandate()])
    store = SqliteNotificationStore(tmp_path / "ntf.db")
    await store.start()
    api = SubscriptionsApi(cast(Gateway, fake), store, [STREAM], NotificationSettings(), lambda: 1_000_000)
    created = await api.create(pb.CreateSubscriptionRequest(event_type=EVENT_TYPE, purpose="student-aid",
                                                            delivery=pb.DELIVERY_MODE_WEBHOOK,
                                                            webhook_url="https://agency.example/hook"),
                               _CALL)  # fmt: skip
    await store.follow(created.id, [f"p-{NID}"], 1, 10)
    return fake, store, created.signing_secret


async def _deliver_one(fake: FakeGateway, store: SqliteNotificationStore) -> FakeSender:
    settings, stats, gateway = NotificationSettings(), NotificationStats(), cast(Gateway, fake)
    reader = EventReader("rnpp", STREAM, cast(object, None), store, gateway, settings, stats,  # type: ignore[arg-type]
                         lambda: 1_000_000)  # fmt: skip
    change = pop.PersonChanged(national_id=NID, changed=[options_pb2.DATA_CATEGORY_ADDRESS],
                               person=pop.Person(national_id=NID, address=pop.Address(street="rue Neuve")))
    await reader.ingest([pop.PersonChangeEvent(sequence=1, event_id="rnpp-1", change=change)])
    sender = FakeSender(fake.audit)
    deliverer = Deliverer(gateway, store, sender, {"rnpp": ("rnpp", STREAM)}, settings, stats, lambda: 2_000_000)
    await deliverer.deliver_due()
    return sender


@pytest.mark.asyncio
async def test_the_store_never_holds_the_signing_secret_and_a_genuine_subscription_is_delivered(tmp_path: Path) -> None:
    fake, store, secret = await _subscribed_through_the_api(tmp_path)
    try:
        with sqlite3.connect(tmp_path / "ntf.db") as db:
            (kept,) = db.execute("SELECT secret FROM ntf_subscriptions").fetchone()
        assert secret.startswith("whsec_") and secret != kept and secret not in kept
        sender = await _deliver_one(fake, store)
        assert sender.sent == [("https://agency.example/hook", "rnpp-1")]
        assert sender.secrets == [secret]
    finally:
        await store.close()


@pytest.mark.parametrize("edit", ["UPDATE ntf_subscriptions SET webhook_url = 'https://operator.example/steal'",
                                  "UPDATE ntf_subscriptions SET secret = 'whsec_" + "B" * 43 + "'",
                                  "UPDATE ntf_subscriptions SET consumer = 'procurement'"])  # fmt: skip
@pytest.mark.asyncio
async def test_a_subscription_edited_in_the_store_is_not_delivered_and_is_a_dead_letter(tmp_path: Path,
                                                                                        edit: str) -> None:  # fmt: skip
    fake, store, _ = await _subscribed_through_the_api(tmp_path)
    try:
        with sqlite3.connect(tmp_path / "ntf.db") as db:   # the operator redirects the agency's events
            db.execute(edit)
        sender = await _deliver_one(fake, store)
        assert sender.sent == []
        records = [r.record for r in await fake.audit.query(AuditQuery(limit=10))]
        assert [r.kind for r in records] == [EventKind.ADMIN]   # the subscription's; nothing left, no notification
        (letter,) = await store.dead_letters(None, 10)
        assert letter.last_error == "subscription fails its integrity check"
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_a_row_marked_audited_in_the_store_without_a_record_is_recorded_before_it_is_sent(tmp_path: Path) -> None:
    """The outbox's ``audited`` flag only saves a second record on a retry: set by hand, it must not let a
    notification leave without a record in the person's history."""
    fake, store, _ = await _subscribed_through_the_api(tmp_path)
    try:
        original = store.ingest

        async def ingest_then_forge(*args: Any) -> int:   # the operator, as soon as the row exists
            created = await original(*args)
            with sqlite3.connect(tmp_path / "ntf.db") as db:
                db.execute("UPDATE ntf_outbox SET audited = 1")
            return created

        store.ingest = ingest_then_forge  # type: ignore[method-assign,assignment]
        sender = await _deliver_one(fake, store)
        assert sender.sent == [("https://agency.example/hook", "rnpp-1")]
        assert sender.recorded_before_send == [True]
        stored = await fake.audit.query(AuditQuery(limit=10))
        notified = [r.record for r in stored if r.record.kind is EventKind.EXCHANGE]
        assert [(r.subject, r.outcome) for r in notified] == [(f"p-{NID}", Outcome.OK)]
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_a_retry_of_a_recorded_delivery_is_not_recorded_again(tmp_path: Path) -> None:
    fake, store, _ = await _subscribed_through_the_api(tmp_path)
    try:
        sender = await _deliver_one(fake, store)
        with sqlite3.connect(tmp_path / "ntf.db") as db:   # as after a failed attempt: pending, audited
            db.execute("UPDATE ntf_outbox SET state = 'pending', owner = '', lease_until_us = 0")
        settings, stats, gateway = NotificationSettings(), NotificationStats(), cast(Gateway, fake)
        again = Deliverer(gateway, store, sender, {"rnpp": ("rnpp", STREAM)}, settings, stats, lambda: 3_000_000)
        assert await again.deliver_due() == 1
        assert len(sender.sent) == 2
        records = [r for r in await fake.audit.query(AuditQuery(limit=10)) if r.record.kind is EventKind.EXCHANGE]
        assert len(records) == 1
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_categories_rewritten_in_the_store_neither_reach_the_agency_nor_the_persons_history(
    tmp_path: Path,
) -> None:
    fake, store, _ = await _subscribed_through_the_api(tmp_path)
    try:
        original = store.ingest

        async def ingest_then_forge(*args: Any) -> int:
            created = await original(*args)
            with sqlite3.connect(tmp_path / "ntf.db") as db:   # "the person's name changed too"
                db.execute("UPDATE ntf_events SET categories = 'ADDRESS,NAME'")
            return created

        store.ingest = ingest_then_forge  # type: ignore[method-assign,assignment]
        sender = await _deliver_one(fake, store)
        assert len(sender.sent) == 1
        assert sender.events[0]["data"]["changed"] == ["DATA_CATEGORY_ADDRESS"]   # type: ignore[index]
        stored = await fake.audit.query(AuditQuery(limit=10))
        (record,) = [r.record for r in stored if r.record.kind is EventKind.EXCHANGE]
        assert record.extra["changed"] == "ADDRESS"
    finally:
        await store.close()
