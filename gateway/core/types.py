"""Plain data carried through the pipeline and into the audit log."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from consent import Mandate

__all__ = [
    "AuditReceipt",
    "AuditRecord",
    "EventKind",
    "ExchangeTiming",
    "MandateEntry",
    "Outcome",
    "StoredAuditRecord",
    "SubjectRole",
]


class Outcome(StrEnum):
    OK = "ok"            # data was returned
    REFUSED = "refused"  # a check said no (mandate, consent, input, quota ...)
    ERROR = "error"      # the registry or the gateway failed


class EventKind(StrEnum):
    EXCHANGE = "exchange"  # a lookup by an authenticated consumer, allowed or not
    ADMIN = "admin"        # a change of mandates, consents ... (who changed what)


class SubjectRole(StrEnum):
    """What the record's subject was to the exchange (``extra["subject_role"]``, absent = data subject)."""

    DATA_SUBJECT = "data_subject"  # the person or company the lookup was about
    THIRD_PARTY = "third_party"    # another person whose data the answer disclosed (household member ...)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry of the exchange log, before the store gives it a sequence number.

    ``subject`` is never the national id itself: it is the keyed pseudonym
    (HMAC-SHA256 under the gateway's audit key) so that the log can be searched
    by subject for the citizen's own view without holding identifiers in clear.
    """

    time_us: int                      # epoch microseconds, UTC
    kind: EventKind
    consumer: str
    service: str                      # "registry.population.v1.PopulationRegistry/GetPerson"
    purpose: str
    legal_basis: str                  # e.g. "A6-1-e"
    legal_reference: str              # national legal text
    subject: str                      # keyed pseudonym of the data subject, "" if none
    consent_id: str
    case_id: str
    officer_id: str
    request_id: str
    trace_id: str
    fields: tuple[str, ...]           # contract field names returned
    outcome: Outcome
    reason: str                       # reason code, "" when outcome is ok
    latency_us: int
    protocol: str                     # "grpc" | "rest" | "admin"
    ai_system: str = ""
    hidden_until_us: int = 0          # embargo: not shown to the citizen before this time
    hidden_reason: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def subject_role(self) -> SubjectRole:
        """Kept in ``extra`` so that it is part of the chained canonical form and older records still verify."""
        return SubjectRole(self.extra.get("subject_role", SubjectRole.DATA_SUBJECT))


@dataclass(frozen=True, slots=True)
class ExchangeTiming:
    """Where an exchange's time went and how big its messages were: for telemetry, never audited.

    Offsets are microseconds from the exchange's start at the gateway (the audit
    record's ``time_us - latency_us``); 0 where the step did not happen.
    """

    registry: str = ""                # registry id, "" when no registry was called
    registry_start_us: int = 0        # request out to the registry
    registry_end_us: int = 0          # response (or failure) in from the registry
    request_bytes: int = 0            # the caller's request, serialised
    registry_response_bytes: int = 0  # the registry's answer, before minimisation
    response_bytes: int = 0           # the minimised answer the caller got
    audit_us: int = 0                 # waiting for the audit record to be committed


@dataclass(frozen=True, slots=True)
class AuditReceipt:
    """What the store returns once a record is durably committed."""

    seq: int
    hash: str  # hex


@dataclass(frozen=True, slots=True)
class StoredAuditRecord:
    seq: int
    record: AuditRecord
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class MandateEntry:
    """A mandate in force and where it comes from: the configuration, or a change made at run time."""

    mandate: Mandate
    origin: str  # "config" | "admin"
    updated_us: int = 0
    updated_by: str = ""
