"""The ``ExchangeObserver`` that feeds metrics, registry health and the front-door span."""

from __future__ import annotations

from collections.abc import Callable, Collection

from opentelemetry import trace

from gateway.core.types import AuditRecord, ExchangeTiming
from observability.labels import known_or_other
from observability.metrics import GatewayMetrics
from observability.registry_health import RegistryHealth, registry_result

__all__ = ["MetricsObserver"]


class MetricsObserver:
    """Counters and histograms per exchange; the gateway's own attributes on the current (server) span.

    Labels are bounded and free of personal data: consumer (from the verified
    token), provider and service (from the contracts), purpose (known codes
    only), outcome and reason (enums), protocol.
    """

    def __init__(
        self, metrics: GatewayMetrics, health: RegistryHealth, *, known_purposes: Callable[[], Collection[str]]
    ) -> None:
        self._m = metrics
        self._health = health
        self._purposes = known_purposes

    def on_exchange(self, record: AuditRecord, provider: str, timing: ExchangeTiming) -> None:
        m = self._m
        labels = {
            "consumer": record.consumer,
            "provider": provider,
            "service": record.service,
            "purpose": known_or_other(record.purpose, self._purposes()),
            "outcome": str(record.outcome),
            "reason": record.reason,
            "protocol": record.protocol,
        }
        m.exchanges.add(1, labels)
        m.exchange_duration.record(record.latency_us / 1e6, {"service": record.service, "outcome": str(record.outcome)})
        m.audit_append.record(timing.audit_us / 1e6)
        if timing.registry_start_us:
            result = registry_result(record.reason)
            seconds = (timing.registry_end_us - timing.registry_start_us) / 1e6
            m.registry_duration.record(
                seconds, {"registry": timing.registry, "service": record.service, "result": result}
            )
            m.registry_calls.add(1, {"registry": timing.registry, "result": result})
            self._health.observe(timing.registry, result)
        if timing.request_bytes:
            m.message_size.record(timing.request_bytes, {"direction": "request", "service": record.service})
        if timing.response_bytes:
            m.message_size.record(timing.response_bytes, {"direction": "response", "service": record.service})
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes({f"passerelle.{k}": v for k, v in labels.items()})
