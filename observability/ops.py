"""Operational records, in the spirit of X-Road's operational monitoring.

For every exchange: when the request came in and the answer went out at the
gateway, when the request went out to the registry and its answer came back,
message sizes, success, fault code, registry and service version — enough for
ops to answer "which registry is slow for whom" with one query
(``GET /v1/ops/exchanges``, whose answer carries a per registry × consumer
summary). No personal data: no subject, no payload, purposes only as known codes.

Best effort, like X-Road's buffer: the recorder never blocks an exchange; a
store that cannot keep up drops the oldest unwritten records and counts them.

The records, the manual submissions (``POST /v1/ops/manual-submissions``, which the interoperability
report sets against the evidence served once-only) and their ports are plain data of the core
(``gateway.core.ops_records``); the stores are adapters (``adapters.stores.ops_store``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from gateway.core.ops_records import OpsLog, OpsRecord
from gateway.core.types import AuditRecord, ExchangeTiming
from observability.labels import known_or_other

__all__ = ["OpsRecorder"]


class OpsRecorder:
    """The ``ExchangeObserver`` that turns each exchange into an ``OpsRecord``."""

    def __init__(
        self, log: OpsLog, *, versions: Callable[[str], str], known_purposes: Callable[[], Collection[str]]
    ) -> None:
        self._log = log
        self._versions = versions  # service full name -> contract version
        self._purposes = known_purposes

    def on_exchange(self, record: AuditRecord, provider: str, timing: ExchangeTiming) -> None:
        start = record.time_us - record.latency_us
        called = bool(timing.registry_start_us)
        self._log.record(
            OpsRecord(
                request_in_us=start,
                request_out_us=start + timing.registry_start_us if called else 0,
                response_in_us=start + timing.registry_end_us if called else 0,
                response_out_us=record.time_us + timing.audit_us,
                consumer=record.consumer,
                provider=provider,
                registry=timing.registry,
                service=record.service,
                service_version=self._versions(record.service),
                protocol=record.protocol,
                purpose=known_or_other(record.purpose, self._purposes()),
                request_id=record.request_id,
                trace_id=record.trace_id,
                request_bytes=timing.request_bytes,
                response_bytes=timing.response_bytes,
                registry_response_bytes=timing.registry_response_bytes,
                succeeded=record.reason == "",
                fault_code=record.reason,
            )
        )
