"""The SQLite outbox keeps each subscription's follow count on its row; older files get it counted once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from adapters.stores.notifications_sqlite import SqliteNotificationStore
from tests.integration.test_notification_stores import _sub


async def test_the_count_follows_follows_and_unfollows(tmp_path: Path) -> None:
    store = SqliteNotificationStore(tmp_path / "n.db")
    await store.add_subscription(_sub("s1"))
    assert await store.follow("s1", ["a", "b", "b", "c"], 1, limit=10) == (3, 3)
    assert await store.follow("s1", ["c", "d"], 2, limit=10) == (1, 4)
    assert await store.unfollow("s1", ["a", "zz"]) == (1, 3)
    sub = await store.subscription("s1")
    assert sub is not None and sub.follows == 3
    await store.close()


async def test_a_file_from_before_the_count_gets_it_counted(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SqliteNotificationStore(path)
    await store.add_subscription(_sub("s1"))
    await store.follow("s1", ["a", "b"], 1, limit=10)
    await store.close()
    with sqlite3.connect(path) as db:   # as an older version left it: no count column
        db.execute("ALTER TABLE ntf_subscriptions DROP COLUMN follows")
        db.execute("INSERT INTO ntf_follows (subscription_id, subject, since_us) VALUES ('s1', 'c', 1)")
    reopened = SqliteNotificationStore(path)
    sub = await reopened.subscription("s1")
    assert sub is not None and sub.follows == 3
    assert await reopened.follow("s1", ["d"], 2, limit=4) == (1, 4)
    await reopened.close()
