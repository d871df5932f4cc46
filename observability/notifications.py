"""Change notifications' metrics (Prometheus names in brackets), on the gateway's ``GatewayMetrics``:

* ``passerelle.notifications.events.read`` [passerelle_notifications_events_read_total] by registry;
* ``passerelle.notifications.events.unreadable`` by registry (events without sequence, id or subject);
* ``passerelle.notifications.delivered`` / ``.failed`` (attempts) / ``.refused`` (at delivery time) /
  ``.dead_lettered`` by consumer;
* ``passerelle.notifications.pending`` and ``passerelle.notifications.dead`` (gauges) and
  ``passerelle.notifications.oldest_pending.age`` (seconds, the delivery lag now) by consumer;
* ``passerelle.notifications.delivery.lag`` [..._seconds] (histogram) by consumer: from the gateway
  reading the event to its delivery.

Labels are registry and consumer ids only, never a subject or an event id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.core.notifications import SubscriptionBacklog
from observability.metrics import GatewayMetrics

__all__ = ["LAG_BUCKETS", "NotificationCounts", "install_notification_metrics"]

#: Seconds: from 10 ms (read and delivered at once) to an hour (retries with backoff).
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class NotificationCounts(Protocol):
    """What the notifications feature counts (``gateway.application.notification_delivery.NotificationStats``)."""

    read: Counter[str]
    bad: Counter[str]
    delivered: Counter[str]
    failed: Counter[str]
    refused: Counter[str]
    dead: Counter[str]
    backlog: Sequence[SubscriptionBacklog]
    on_delivered: list[Callable[[str, float], None]]


def _by(counter: Counter[str], label: str) -> Callable[[], list[tuple[dict[str, str], float]]]:
    return lambda: [({label: k}, float(v)) for k, v in list(counter.items())]


def _per_consumer(stats: NotificationCounts, value: Callable[[SubscriptionBacklog], float],
                  combine: Callable[[float, float], float]) -> list[tuple[dict[str, str], float]]:  # fmt: skip
    out: dict[str, float] = {}
    for b in stats.backlog:
        out[b.consumer] = combine(out.get(b.consumer, 0.0), value(b))
    return [({"consumer": c}, v) for c, v in out.items()]


def install_notification_metrics(metrics: GatewayMetrics, stats: NotificationCounts,
                                 clock_us: Callable[[], int]) -> None:  # fmt: skip
    """Declare the instruments on ``metrics``, read from ``stats`` at each collection."""
    metrics.counter("passerelle.notifications.events.read", "Change events read from registries",
                    _by(stats.read, "registry"))  # fmt: skip
    metrics.counter("passerelle.notifications.events.unreadable", "Change events without sequence, id or subject",
                    _by(stats.bad, "registry"))  # fmt: skip
    metrics.counter("passerelle.notifications.delivered", "Events delivered", _by(stats.delivered, "consumer"))
    metrics.counter("passerelle.notifications.failed", "Failed delivery attempts", _by(stats.failed, "consumer"))
    metrics.counter("passerelle.notifications.refused", "Events refused at delivery time (mandate, consent)",
                    _by(stats.refused, "consumer"))  # fmt: skip
    metrics.counter("passerelle.notifications.dead_lettered", "Events dead-lettered", _by(stats.dead, "consumer"))
    metrics.gauge("passerelle.notifications.pending", "Events waiting for delivery",
                  lambda: _per_consumer(stats, lambda b: float(b.pending), lambda a, b: a + b))  # fmt: skip
    metrics.gauge("passerelle.notifications.dead", "Dead letters waiting for an admin",
                  lambda: _per_consumer(stats, lambda b: float(b.dead), lambda a, b: a + b))  # fmt: skip

    def age(b: SubscriptionBacklog) -> float:
        return max(0.0, (clock_us() - b.oldest_created_us) / 1e6) if b.oldest_created_us else 0.0

    metrics.gauge("passerelle.notifications.oldest_pending.age", "Age of the oldest pending event (delivery lag)",
                  lambda: _per_consumer(stats, age, max), unit="s")  # fmt: skip
    lag = metrics.provider.get_meter("passerelle").create_histogram(
        "passerelle.notifications.delivery.lag", unit="s", description="From reading an event to delivering it",
        explicit_bucket_boundaries_advisory=LAG_BUCKETS,
    )  # fmt: skip
    stats.on_delivered.append(lambda consumer, seconds: lag.record(seconds, {"consumer": consumer}))
