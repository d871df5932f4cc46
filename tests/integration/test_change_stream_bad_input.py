"""A registry's change stream that misbehaves, read into the SQLite outbox: an envelope whose sequence
does not fit the store's 64-bit integer (garbage, or a registry bug) must neither stop the reader for
good nor move the cursor past every later event."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from adapters.stores.notifications_sqlite import SqliteNotificationStore
from gateway._pb.passerelle.options.v1 import options_pb2
from gateway._pb.registry.population.v1 import population_pb2 as pop
from gateway.application.notification_delivery import EventReader, NotificationStats
from gateway.application.notifications import NotificationSettings
from gateway.application.runtime import Gateway
from gateway.core.change_events import load_event_streams
from gateway.core.notifications import Subscription

STREAM = load_event_streams(["registry.population.v1.PopulationRegistry"])[
    "registry.population.v1.PopulationRegistry/WatchChanges"]
NID = "1991062434054"


class _Pseudonyms:
    @staticmethod
    def pseudonymise(value: str) -> str:
        return "p-" + value


def _envelope(sequence: int, event_id: str = "") -> pop.PersonChangeEvent:
    change = pop.PersonChanged(national_id=NID, changed=[options_pb2.DATA_CATEGORY_ADDRESS],
                               person=pop.Person(national_id=NID, given_names="Anne"))  # fmt: skip
    return pop.PersonChangeEvent(sequence=sequence, event_id=event_id or f"rnpp-{sequence}", change=change)


async def _reader(tmp_path: Path) -> tuple[EventReader, SqliteNotificationStore, NotificationStats]:
    store = SqliteNotificationStore(tmp_path / "ntf.db")
    await store.start()
    await store.add_subscription(Subscription("sub_1", "cedies", STREAM.event_type, "student-aid", "stream"))
    await store.follow("sub_1", ["p-" + NID], 1, 10)
    stats = NotificationStats()
    reader = EventReader("rnpp", STREAM, cast(object, None), store, cast(Gateway, _Pseudonyms()),  # type: ignore[arg-type]
                         NotificationSettings(), stats, lambda: 1)  # fmt: skip
    return reader, store, stats


@pytest.mark.asyncio
async def test_a_sequence_beyond_64_bits_is_a_bad_event_and_the_events_after_it_are_kept(tmp_path: Path) -> None:
    reader, store, stats = await _reader(tmp_path)
    try:
        assert await reader.ingest([_envelope(1), _envelope(2**64 - 1, "junk"), _envelope(2)]) == 2
        assert await store.cursor("rnpp") == 2   # not past every later event
        assert stats.bad["rnpp"] == 1
        assert await reader.ingest([_envelope(3)]) == 1
    finally:
        await store.close()
