"""Which outbox a configuration gets (``gateway.bootstrap_notifications.notification_store_for``): SQLite by
default, PostgreSQL when ``[notifications] store`` is a DSN, or when it is unset and the consents are on
PostgreSQL (gateways sharing their consents share their outbox). Nothing connects here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.stores.notifications_memory import MemoryNotificationStore
from adapters.stores.notifications_postgres import PostgresNotificationStore
from adapters.stores.notifications_sqlite import SqliteNotificationStore
from gateway.bootstrap_notifications import notification_store_for
from gateway.config import Config

DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _config(tmp_path: Path, gateway: dict[str, Any] | None = None, **notifications: Any) -> Config:
    raw: dict[str, Any] = {"gateway": gateway or {}, "base_dir": tmp_path}
    if notifications:
        raw["notifications"] = notifications
    return Config.model_validate(raw)


def test_the_default_outbox_is_sqlite_in_the_data_folder(tmp_path: Path) -> None:
    store = notification_store_for(_config(tmp_path))
    assert isinstance(store, SqliteNotificationStore)


def test_a_postgresql_store_setting_selects_the_shared_outbox(tmp_path: Path) -> None:
    store = notification_store_for(_config(tmp_path, store=DSN))
    assert isinstance(store, PostgresNotificationStore)
    assert (store.dsn, store.schema) == (DSN, "passerelle_notifications")


def test_an_unset_store_follows_consents_on_postgresql(tmp_path: Path) -> None:
    store = notification_store_for(_config(tmp_path, {"consents": DSN}))
    assert isinstance(store, PostgresNotificationStore) and store.dsn == DSN


def test_an_explicit_store_wins_over_consents_on_postgresql(tmp_path: Path) -> None:
    config = _config(tmp_path, {"consents": DSN}, store="sqlite:notifications.db")
    assert isinstance(notification_store_for(config), SqliteNotificationStore)
    assert isinstance(notification_store_for(_config(tmp_path, {"consents": DSN}, store="memory")),
                      MemoryNotificationStore)  # fmt: skip


def test_an_unknown_store_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="postgresql:// DSN"):
        notification_store_for(_config(tmp_path, store="mysql://x"))
