"""Operational records and manual submissions: plain data, the stores' ports, and their summary.

What ops sees of each exchange (no personal data: no subject, no payload, purposes only as known
codes) and the documents a portal still had to ask a citizen for. Recorded by
``observability.ops.OpsRecorder``, kept by ``adapters.stores.ops_store``, served by
``gateway.application.ops`` and read by the interoperability report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.core.quantiles import LogHistogram

__all__ = [
    "ManualSubmission",
    "ManualSubmissions",
    "OpsLog",
    "OpsQuery",
    "OpsRecord",
    "OpsStore",
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


class OpsStore(OpsLog, ManualSubmissions, Protocol):
    """What the operations API needs: the records, the manual submissions, and how many were dropped."""

    @property
    def dropped(self) -> int: ...


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
