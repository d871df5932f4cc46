"""Operational records, in the spirit of X-Road's operational monitoring.

For every exchange: when the request came in and the answer went out at the
gateway, when the request went out to the registry and its answer came back,
message sizes, success, fault code, registry and service version — enough for
ops to answer "which registry is slow for whom" with one query
(``GET /v1/ops/exchanges``, whose answer carries a per registry × consumer
summary). No personal data: no subject, no payload, purposes only as known codes.

Best effort, like X-Road's buffer: the recorder never blocks an exchange; a
store that cannot keep up drops the oldest unwritten records and counts them.

Also here: manual submissions, the documents a portal still had to ask a
citizen for (``POST /v1/ops/manual-submissions``), which the interoperability
report sets against the evidence served once-only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.core.types import AuditRecord, ExchangeTiming
from observability.labels import known_or_other
from observability.quantiles import LogHistogram

__all__ = [
    "ManualSubmission",
    "ManualSubmissions",
    "OpsLog",
    "OpsQuery",
    "OpsRecord",
    "OpsRecorder",
    "OpsSummary",
    "summarise",
]


@dataclass(frozen=True, slots=True)
class OpsRecord:
    """One exchange seen by ops. Times are epoch microseconds; 0 where the step did not happen."""

    request_in_us: int  # the request reached the gateway
    request_out_us: int  # the gateway sent it to the registry
    response_in_us: int  # the registry's answer (or failure) reached the gateway
    response_out_us: int  # the gateway answered (after the audit commit)
    consumer: str
    provider: str
    registry: str
    service: str  # "registry.population.v1.PopulationRegistry/GetPerson"
    service_version: str  # contract version, "v1"
    protocol: str  # front door: grpc | rest
    purpose: str  # known purpose code or "_other"
    request_id: str
    trace_id: str
    request_bytes: int
    response_bytes: int  # what the caller got (minimised)
    registry_response_bytes: int  # what the registry sent
    succeeded: bool
    fault_code: str  # the reason code, "" when succeeded
    id: int = 0  # given by the store

    @property
    def registry_us(self) -> int:
        return self.response_in_us - self.request_out_us if self.request_out_us else 0


@dataclass(frozen=True, slots=True)
class OpsQuery:
    since_us: int | None = None
    until_us: int | None = None
    consumer: str | None = None
    registry: str | None = None
    service: str | None = None
    succeeded: bool | None = None
    after_id: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class OpsSummary:
    """Per registry and consumer: how many, how many failed, how fast the registry answered."""

    registry: str
    consumer: str
    exchanges: int
    failures: int
    registry_p50_us: int | None
    registry_p95_us: int | None


class OpsLog(Protocol):
    def record(self, record: OpsRecord) -> None:
        """Queue one record; never blocks and never raises for lack of room."""
        ...

    async def query(self, q: OpsQuery) -> Sequence[OpsRecord]: ...

    async def summary(self, q: OpsQuery) -> Sequence[OpsSummary]:
        """Aggregates over every record matching ``q`` (``after_id``/``limit`` ignored)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ManualSubmission:
    """Documents a portal still had to ask a citizen for, in one procedure."""

    time_us: int
    consumer: str  # from the portal's verified token
    procedure: str  # the portal's procedure code
    documents: int  # how many documents the citizen supplied
    case_id: str = ""


class ManualSubmissions(Protocol):
    async def add(self, m: ManualSubmission) -> None: ...

    async def totals(self, since_us: int, until_us: int) -> dict[str, int]:
        """Documents per consumer with ``since_us <= time_us < until_us``."""
        ...


def summarise(records: Iterable[OpsRecord]) -> list[OpsSummary]:
    """Group by (registry, consumer); percentiles to within 1 % (``LogHistogram``)."""
    groups: dict[tuple[str, str], tuple[list[int], LogHistogram]] = {}
    for r in records:
        counts, hist = groups.setdefault((r.registry, r.consumer), ([0, 0], LogHistogram()))
        counts[0] += 1
        counts[1] += 0 if r.succeeded else 1
        if r.request_out_us:
            hist.add(r.registry_us)
    return [
        OpsSummary(registry, consumer, c[0], c[1], h.percentile(50), h.percentile(95))
        for (registry, consumer), (c, h) in sorted(groups.items())
    ]


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
