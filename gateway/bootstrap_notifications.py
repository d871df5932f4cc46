"""Composition of change notifications (docs/decisions/0009): the store ``[notifications] store`` names,
the webhook sender, one change-stream reader per gRPC registry whose contract has a ``change_events``
rpc, the delivery loop, the subscriptions API on both doors and ``StreamEvents`` on gRPC, metrics.
The background tasks stop with the gateway (``Gateway.closers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from adapters.notifications.change_feed import GrpcChangeFeed
from adapters.notifications.webhook import HttpWebhookSender
from gateway.application.notification_delivery import Deliverer, EventReader, NotificationStats
from gateway.application.notifications import NotificationSettings, SubscriptionsApi, subscriptions_binding
from gateway.application.runtime import Gateway
from gateway.config import Config
from gateway.core.change_events import EventStream
from gateway.core.clock import now_us
from gateway.core.ports import NotificationStore
from gateway.entrypoints.notifications import grpc_stream_events
from observability.notifications import install_notification_metrics

__all__ = ["install_notifications", "notification_settings", "notification_store_for"]

log = logging.getLogger("passerelle.notifications")
_BACKLOG_EVERY_S = 5.0
_POSTGRES = ("postgresql://", "postgres://")


def notification_store_for(config: Config) -> NotificationStore:
    """``[notifications] store``: ``sqlite:PATH`` (default ``sqlite:notifications.db`` in the data folder),
    ``memory``, or a ``postgresql://`` DSN (schema ``passerelle_notifications``; gateways on several hosts
    share the outbox). Left unset while ``[gateway] consents`` is a PostgreSQL DSN, the outbox goes there
    too, as the sessions do: gateways that share their consents share their outbox, and do not each read
    and deliver every change."""
    n = config.notifications
    target = n.store
    if "store" not in n.model_fields_set and config.gateway.consents.startswith(_POSTGRES):
        target = config.gateway.consents
    if target == "memory":
        from adapters.stores.notifications_memory import MemoryNotificationStore

        return MemoryNotificationStore()
    if target.startswith(_POSTGRES):
        from adapters.stores.notifications_postgres import PostgresNotificationStore  # psycopg only when configured

        return PostgresNotificationStore(target)
    if not target.startswith("sqlite:"):
        raise ValueError(f"notifications.store: {target!r} is not sqlite:PATH, memory or a postgresql:// DSN")
    from adapters.stores.notifications_sqlite import SqliteNotificationStore

    return SqliteNotificationStore(config.path(target.removeprefix("sqlite:")))


def notification_settings(config: Config) -> NotificationSettings:
    n = config.notifications
    return NotificationSettings(
        demo=config.gateway.demo, max_subscriptions=n.max_subscriptions, max_follows=n.max_follows,
        max_follow_batch=n.max_follow_batch, max_attempts=n.max_attempts, retry_base_s=n.retry_base_s,
        retry_max_s=n.retry_max_s, lease_s=n.lease_s, workers=n.workers, per_subscription=n.per_subscription,
        poll_s=n.poll_s, read_batch=n.read_batch,
    )  # fmt: skip


def _streams(gateway: Gateway) -> dict[str, tuple[str, EventStream, str]]:
    """Registry id -> (registry id, its change-event rpc, gRPC target), for gRPC registries that have one."""
    by_service = {s.service: s for s in gateway.event_streams.values()}
    return {r.id: (r.id, by_service[r.contract], r.target) for r in gateway.config.registries
            if r.adapter == "grpc" and r.contract in by_service and r.target}  # fmt: skip


async def _housekeeping(store: NotificationStore, stats: NotificationStats, keep_s: float) -> None:
    """The backlog for metrics every few seconds; ended deliveries and their events purged after ``keep_s``."""
    while True:
        with contextlib.suppress(Exception):   # metrics only: a failed read keeps the last figures
            stats.backlog = await store.backlog()
        try:
            await store.purge(now_us() - int(keep_s * 1e6))
        except Exception as exc:   # tried again at the next round
            log.warning("notification outbox not purged (%s)", type(exc).__name__)
        await asyncio.sleep(_BACKLOG_EVERY_S)


async def install_notifications(gateway: Gateway) -> None:
    config = gateway.config
    if not config.notifications.enabled:
        return
    store = notification_store_for(config)
    await store.start()
    settings, stats = notification_settings(config), NotificationStats()
    found = _streams(gateway)
    streams = {rid: (rid, s) for rid, (_, s, _) in found.items()}
    api = SubscriptionsApi(gateway, store, [s for _, s in streams.values()], settings, now_us)
    sender = HttpWebhookSender(demo=config.gateway.demo, timeout_s=config.notifications.webhook_timeout_s,
                               connect_timeout_s=config.notifications.webhook_connect_timeout_s,
                               max_connections=settings.workers)  # fmt: skip
    deliverer = Deliverer(gateway, store, sender, streams, settings, stats, now_us)
    api.on_ack.append(deliverer.acked)
    gateway.bindings.append(subscriptions_binding(api))
    gateway.grpc_services.append(grpc_stream_events(gateway.pipeline, api, deliverer))
    if gateway.metrics is not None:
        install_notification_metrics(gateway.metrics, stats, now_us)
    feeds = [GrpcChangeFeed(target, stream) for _, stream, target in found.values()]
    readers = [EventReader(rid, stream, feed, store, gateway, settings, stats, now_us)
               for (rid, stream, _), feed in zip(found.values(), feeds, strict=True)]  # fmt: skip
    tasks = [asyncio.create_task(r.run(), name=f"notifications-reader-{r.registry}") for r in readers]
    tasks.append(asyncio.create_task(deliverer.run_webhooks(), name="notifications-delivery"))
    tasks.append(asyncio.create_task(_housekeeping(store, stats, config.notifications.keep_finished_s),
                                     name="notifications-housekeeping"))

    async def close() -> None:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for feed in feeds:
            await feed.close()
        await sender.close()
        await store.close()

    gateway.closers.append(close)
