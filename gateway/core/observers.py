"""Fan-out of the pipeline's once-per-exchange telemetry hook.

Telemetry must never change an exchange's outcome: an observer that raises is
logged (rate-limited by the logging set-up) and the others still run.
"""

from __future__ import annotations

import logging

from gateway.core.ports import ExchangeObserver
from gateway.core.types import AuditRecord, ExchangeTiming

__all__ = ["ExchangeObservers"]

_log = logging.getLogger("passerelle.telemetry")


class ExchangeObservers:
    """An ``ExchangeObserver`` calling each added observer in turn."""

    def __init__(self, *observers: ExchangeObserver) -> None:
        self._observers: list[ExchangeObserver] = list(observers)

    def add(self, observer: ExchangeObserver) -> None:
        self._observers.append(observer)

    def on_exchange(self, record: AuditRecord, provider: str, timing: ExchangeTiming) -> None:
        for observer in self._observers:
            try:
                observer.on_exchange(record, provider, timing)
            except Exception:  # a telemetry bug must not fail the exchange
                _log.exception("exchange observer failed", extra={"fields": {"observer": type(observer).__name__}})
