"""Change notifications against an operator with write access to the SQLite outbox (not to the gateway's
keys): what a row says about whose change it is must not decide whose history records the notification,
nor whose consent allows it. The person is the one the change message names (docs/decisions/0009)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import cast

import pytest

from adapters.stores.notifications_sqlite import SqliteNotificationStore
from consent.model import Consent
from gateway._pb.passerelle.options.v1 import options_pb2
from gateway._pb.registry.population.v1 import population_pb2 as pop
from gateway.application.notification_delivery import Deliverer, EventReader, NotificationStats
from gateway.application.notifications import NotificationSettings
from gateway.application.runtime import Gateway
from gateway.core.notifications import Subscription
from gateway.core.ports import AuditQuery
from gateway.core.types import Outcome
from tests.unit.test_notifications import EVENT_TYPE, NID, STREAM, FakeGateway, FakeSender, _mandate

OTHER = "1985020312345"


@pytest.mark.asyncio
async def test_a_rewritten_subject_in_the_outbox_neither_borrows_another_persons_consent_nor_hides_the_record(
    tmp_path: Path,
) -> None:
    fake = FakeGateway([_mandate(legal_basis="A6-1-a")])   # a mandate that needs the person's consent
    await fake.consents.add(Consent("c-other", f"p-{OTHER}", "cedies", "student-aid", granted_us=1))
    store = SqliteNotificationStore(tmp_path / "ntf.db")
    await store.start()
    try:
        await store.add_subscription(Subscription("sub_1", "cedies", EVENT_TYPE, "student-aid", "webhook",
                                                  "https://a.example/hook", "whsec_" + "A" * 43, 1))  # fmt: skip
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
