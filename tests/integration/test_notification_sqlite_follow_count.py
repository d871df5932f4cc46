"""The SQLite outbox keeps each subscription's follow count on its row; older files get it counted once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

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


def _old_file(path: Path) -> None:
    """As an older version left it: no count column."""
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE ntf_subscriptions DROP COLUMN follows")


async def test_two_workers_opening_an_old_file_at_once_both_open_it(tmp_path: Path) -> None:
    """Several workers share one SQLite file: each sees no count column, one adds it, and the other,
    which waited for the write lock, must not fail with "duplicate column name"."""
    import threading
    import time

    from adapters.stores._sqlite import open_wal
    from adapters.stores.notifications_sqlite import _migrate_follow_count

    path = tmp_path / "old.db"
    store = SqliteNotificationStore(path)
    await store.add_subscription(_sub("s1"))
    await store.follow("s1", ["a", "b"], 1, limit=10)
    await store.close()
    _old_file(path)
    first = open_wal(path, isolation_level=None)
    first.execute("BEGIN IMMEDIATE")   # the first worker is migrating
    failures: list[BaseException] = []

    def second_worker() -> None:
        db = open_wal(path, isolation_level=None)
        try:
            _migrate_follow_count(db)
        except BaseException as exc:
            failures.append(exc)
        finally:
            db.close()

    thread = threading.Thread(target=second_worker)
    thread.start()
    time.sleep(0.5)   # the second has looked for the column and waits for the write lock
    first.execute("ALTER TABLE ntf_subscriptions ADD COLUMN follows INTEGER NOT NULL DEFAULT 0")
    first.execute("UPDATE ntf_subscriptions SET follows = 2")
    first.execute("COMMIT")
    first.close()
    thread.join(10)
    assert failures == []
    reopened = SqliteNotificationStore(path)
    sub = await reopened.subscription("s1")
    assert sub is not None and sub.follows == 2
    await reopened.close()


async def test_a_count_left_wrong_by_an_older_worker_is_counted_again_on_open(tmp_path: Path) -> None:
    """A worker of the previous version (rolling upgrade, or a roll-back) follows without keeping the
    count: the next open counts again, so the follow limit is not exceeded for ever."""
    path = tmp_path / "n.db"
    store = SqliteNotificationStore(path)
    await store.add_subscription(_sub("s1"))
    await store.follow("s1", ["a"], 1, limit=3)
    await store.close()
    with sqlite3.connect(path) as db:   # the older worker's follows: rows only
        db.executemany("INSERT INTO ntf_follows (subscription_id, subject, since_us) VALUES ('s1', ?, 1)",
                       [("b",), ("c",)])  # fmt: skip
    reopened = SqliteNotificationStore(path)
    sub = await reopened.subscription("s1")
    assert sub is not None and sub.follows == 3
    with pytest.raises(ValueError):
        await reopened.follow("s1", ["d"], 2, limit=3)
    await reopened.close()
