"""Reading the demo population register's change stream over gRPC into the SQLite outbox, stopped and
started again: every change arrives once, none twice (the cursor is kept with the events it covers)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import cast

from adapters.notifications.change_feed import GrpcChangeFeed
from adapters.stores.notifications_sqlite import SqliteNotificationStore
from gateway.application.notification_delivery import EventReader, NotificationStats
from gateway.application.notifications import NotificationSettings
from gateway.application.runtime import Gateway
from gateway.core.change_events import load_event_streams
from gateway.core.clock import now_us
from gateway.core.notifications import Subscription
from gateway.demo._model import Address
from gateway.demo.changes import ChangeLog
from gateway.demo.data import generate
from gateway.demo.registries import start_grpc_registry

STREAM = load_event_streams(["registry.population.v1.PopulationRegistry"])[
    "registry.population.v1.PopulationRegistry/WatchChanges"]
ADDRESS = Address("1", "rue Neuve", "L-4000", "Esch-sur-Alzette", "Esch-sur-Alzette")


class _Pseudonyms:
    @staticmethod
    def pseudonymise(value: str) -> str:
        return "p-" + value


async def _read_until(store: SqliteNotificationStore, target: str, sequence: int) -> None:
    feed = GrpcChangeFeed(target, STREAM)
    reader = EventReader("rnpp", STREAM, feed, store, cast(Gateway, _Pseudonyms()), NotificationSettings(read_batch=2),
                         NotificationStats(), now_us)  # fmt: skip
    task = asyncio.create_task(reader.run())
    try:
        async with asyncio.timeout(10):
            while await store.cursor("rnpp") < sequence:
                await asyncio.sleep(0.02)
    finally:
        task.cancel()   # as abruptly as a stop can be within one process: mid-stream
        await asyncio.gather(task, return_exceptions=True)
        await feed.close()


async def test_a_restarted_reader_resumes_without_loss_or_duplication(tmp_path: Path) -> None:
    data = generate(20260101, persons=50)
    people = [h.members[0] for h in data.households[:3]]
    changes = ChangeLog(tmp_path / "changes.db")
    server, port = await start_grpc_registry(data, changes=changes)
    try:
        store = SqliteNotificationStore(tmp_path / "notifications.db")
        await store.start()
        await store.add_subscription(Subscription("s", "cedies", STREAM.event_type, "student-aid", "stream"))
        await store.follow("s", [f"p-{n}" for n in people[:2]], 1, 10)   # the third person is not followed
        for n in (*people, people[0]):
            changes.record(n, ADDRESS, dt.date(2026, 12, 1))
        await _read_until(store, f"127.0.0.1:{port}", 4)
        await store.close()
        for n in people:   # recorded while the gateway is down
            changes.record(n, ADDRESS, dt.date(2026, 12, 2))
        store = SqliteNotificationStore(tmp_path / "notifications.db")
        await store.start()
        assert await store.cursor("rnpp") == 4
        await _read_until(store, f"127.0.0.1:{port}", 7)
        rows = await store.lease("t", now_us(), 10_000_000, 100, mode="stream", subscription_id="s")
        delivered = []
        while rows:   # one subject at a time is leasable: acknowledge and lease on
            delivered += [d.event.event_id for d in rows]
            for d in rows:   # recorded, then sent, then acknowledged (an unsent row cannot be acknowledged)
                assert await store.mark_audited(d.id, "t")
            await store.ack("s", [d.event.event_id for d in rows], now_us())
            rows = await store.lease("t", now_us(), 10_000_000, 100, mode="stream", subscription_id="s")
        assert sorted(delivered, key=lambda e: int(e.split("-")[1])) == [
            "rnpp-1", "rnpp-2", "rnpp-4", "rnpp-5", "rnpp-6"]
        await store.close()
    finally:
        await server.stop(0)
        changes.close()
