"""The interoperability report: yearly digital-maturity indicators computed from the exchange log.

Pure computation over plain rows (no I/O): ``ReportBuilder`` takes exchange rows
one at a time in bounded memory (percentiles via ``LogHistogram``), and
``build_report`` assembles the document whose schema, ``passerelle.report/v1``,
is described in docs/report.md. Figures per administration, both as consumer
(the agency asking) and as provider (the registry answering).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from consent.model import CONSENT_BASES
from gateway.core.quantiles import LogHistogram

__all__ = ["SCHEMA", "ExchangeRow", "Period", "ReportBuilder", "build_report"]

SCHEMA = "passerelle.report/v1"
#: Failures of the registry itself; the exchange reached it (or tried to).
REGISTRY_FAILURES = frozenset({"REGISTRY_UNAVAILABLE", "REGISTRY_TIMEOUT", "REGISTRY_BAD_RESPONSE"})
#: Answers from the registry: it was reached and answered.
REGISTRY_ANSWERS = frozenset({"", "SUBJECT_NOT_FOUND"})


class ExchangeRow(NamedTuple):
    """The columns of one exchange-log record that the report reads (no subject, no fields)."""

    time_us: int
    consumer: str
    service: str
    purpose: str
    legal_basis: str
    case_id: str
    outcome: str  # ok | refused | error
    reason: str
    latency_us: int
    ai_system: str


@dataclass(frozen=True, slots=True)
class Period:
    since_us: int
    until_us: int  # exclusive

    def previous(self) -> Period:
        """The period before, of the same calendar length: whole months (a year) shift by months, else by time."""
        a, b = _utc(self.since_us), _utc(self.until_us)
        if a.day == b.day == 1 and a.time() == b.time() == datetime.min.time():
            months = (b.year - a.year) * 12 + b.month - a.month
            back = (a.year * 12 + a.month - 1) - months
            start = a.replace(year=back // 12, month=back % 12 + 1)
            return Period(int(start.timestamp()) * 1_000_000, self.since_us)
        return Period(2 * self.since_us - self.until_us, self.since_us)

    def as_dict(self) -> dict[str, str]:
        return {"from": _iso(self.since_us), "to": _iso(self.until_us)}


def _utc(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC)


def _iso(us: int) -> str:
    moment = datetime.fromtimestamp(us / 1e6, UTC)
    return (
        moment.date().isoformat() if moment.time() == datetime.min.time() else moment.isoformat().replace("+00:00", "Z")
    )


@dataclass(slots=True)
class _Consumer:
    outcomes: Counter[str] = field(default_factory=Counter)
    services: set[str] = field(default_factory=set)
    purposes: set[str] = field(default_factory=set)
    cases: set[str] = field(default_factory=set)
    refusals: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    bases: Counter[str] = field(default_factory=Counter)
    ai_exchanges: int = 0
    ai_systems: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Provider:
    exchanges: int = 0
    reached: int = 0
    failures: int = 0
    latency: LogHistogram = field(default_factory=LogHistogram)


class ReportBuilder:
    """Accumulates one period's rows. ``providers``: service full name -> provider (administration)."""

    def __init__(self, providers: Mapping[str, str]) -> None:
        self._providers = providers
        self.consumers: dict[str, _Consumer] = {}
        self.provider_stats: dict[str, _Provider] = {}

    def add(self, row: ExchangeRow) -> None:
        c = self.consumers.get(row.consumer)
        if c is None:
            c = self.consumers[row.consumer] = _Consumer()
        c.outcomes[row.outcome] += 1
        c.services.add(row.service)
        if row.purpose:
            c.purposes.add(row.purpose)
        if row.outcome == "ok" and row.case_id:
            c.cases.add(row.case_id)
        if row.outcome == "refused":
            c.refusals[row.reason] += 1
        elif row.outcome == "error":
            c.errors[row.reason] += 1
        if row.legal_basis:
            c.bases[row.legal_basis] += 1
        if row.ai_system:
            c.ai_exchanges += 1
            c.ai_systems.add(row.ai_system)
        self._add_provider(row)

    def _add_provider(self, row: ExchangeRow) -> None:
        name = self._providers.get(row.service, row.service.split("/")[0])
        p = self.provider_stats.get(name)
        if p is None:
            p = self.provider_stats[name] = _Provider()
        p.exchanges += 1
        if row.reason in REGISTRY_FAILURES or (row.reason in REGISTRY_ANSWERS and row.outcome != "refused"):
            p.reached += 1
            p.latency.add(row.latency_us)
            p.failures += row.reason in REGISTRY_FAILURES


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 6) if whole else None


def _figures(c: _Consumer, manual: int, revocations: int) -> dict[str, Any]:
    exchanges = sum(c.outcomes.values())
    served = c.outcomes["ok"]
    with_basis = sum(c.bases.values())
    under_consent = sum(n for b, n in c.bases.items() if b in CONSENT_BASES)
    return {
        "exchanges": exchanges,
        "ok": served,
        "refused": c.outcomes["refused"],
        "errors": c.outcomes["error"],
        "distinct_services": len(c.services),
        "distinct_purposes": len(c.purposes),
        "distinct_cases": len(c.cases),
        "evidence_served": served,
        "manual_documents": manual,
        "digitalisation_rate": _ratio(served, served + manual),
        "refusal_rate": _ratio(c.outcomes["refused"], exchanges),
        "refusals_by_reason": dict(sorted(c.refusals.items())),
        "errors_by_reason": dict(sorted(c.errors.items())),
        "legal_bases": dict(sorted(c.bases.items())),
        "consent_share": _ratio(under_consent, with_basis),
        "consent_revocations": revocations,
        "ai_exchanges": c.ai_exchanges,
        "distinct_ai_systems": len(c.ai_systems),
    }


def _merge(consumers: Mapping[str, _Consumer]) -> _Consumer:
    total = _Consumer()
    for name, c in consumers.items():
        total.outcomes.update(c.outcomes)
        total.services |= c.services
        total.purposes |= c.purposes
        total.cases |= {f"{name}\x00{case}" for case in c.cases}  # a case id is the consumer's own
        total.refusals.update(c.refusals)
        total.errors.update(c.errors)
        total.bases.update(c.bases)
        total.ai_exchanges += c.ai_exchanges
        total.ai_systems |= c.ai_systems
    return total


def _provider(name: str, p: _Provider) -> dict[str, Any]:
    p50, p95 = p.latency.percentile(50), p.latency.percentile(95)
    return {
        "id": name,
        "exchanges": p.exchanges,
        "registry_calls": p.reached,
        "registry_failures": p.failures,
        "availability": _ratio(p.reached - p.failures, p.reached),
        "latency_p50_ms": None if p50 is None else round(p50 / 1000, 3),
        "latency_p95_ms": None if p95 is None else round(p95 / 1000, 3),
    }


def _section(b: ReportBuilder, manual: Mapping[str, int], revocations: Mapping[str, int]) -> dict[str, Any]:
    names = sorted(set(b.consumers) | set(manual) | set(revocations))
    consumers = [
        {"id": n, **_figures(b.consumers.get(n, _Consumer()), manual.get(n, 0), revocations.get(n, 0))} for n in names
    ]
    totals = _figures(_merge(b.consumers), sum(manual.values()), sum(revocations.values()))
    everything = _Provider()
    for p in b.provider_stats.values():
        everything.exchanges += p.exchanges
        everything.reached += p.reached
        everything.failures += p.failures
        everything.latency.merge(p.latency)
    totals["availability"] = _provider("", everything)["availability"]
    providers = [_provider(n, p) for n, p in sorted(b.provider_stats.items())]
    return {"totals": totals, "consumers": consumers, "providers": providers}


TREND_FIGURES = (
    "exchanges",
    "evidence_served",
    "distinct_cases",
    "digitalisation_rate",
    "refusal_rate",
    "consent_share",
    "consent_revocations",
    "ai_exchanges",
    "availability",
)


def _trend(now: Mapping[str, Any], before: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name in TREND_FIGURES:
        cur, prev = now.get(name), before.get(name)
        delta = None if cur is None or prev is None else round(cur - prev, 6)
        out[name] = {
            "current": cur,
            "previous": prev,
            "delta": delta,
            "relative": _ratio(delta, prev) if delta is not None and prev else None,
        }
    return out


def build_report(
    *,
    gateway: str,
    period: Period,
    generated_us: int,
    current: ReportBuilder,
    previous: ReportBuilder,
    manual: tuple[Mapping[str, int], Mapping[str, int]],
    revocations: tuple[Mapping[str, int], Mapping[str, int]],
) -> dict[str, Any]:
    """The report document; ``manual`` and ``revocations`` are (current, previous) per consumer."""
    now = _section(current, manual[0], revocations[0])
    before = _section(previous, manual[1], revocations[1])
    return {
        "schema": SCHEMA,
        "gateway": gateway,
        "generated_at": _iso(generated_us),
        "period": period.as_dict(),
        "previous_period": period.previous().as_dict(),
        **now,
        "trend": _trend(now["totals"], before["totals"]),
    }
