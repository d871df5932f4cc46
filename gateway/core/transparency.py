"""The citizen's view of the exchange log: who accessed my data, when, why, under which law.

Pure functions over stored records and the configured catalogue (agency names,
purpose titles, the contracts' field categories); time is passed in. The
subject filter is applied by the caller from the token, never from a parameter.

Probes are shown too: an access check about the citizen made by an agency or staff
(an ``EventKind.ADMIN`` record with ``action=access-check``) is an entry with
outcome ``checked``, the service it asked about, and the answer's reason code; no
data left, and no consent id is shown.

Embargo: a record whose ``hidden_until_us`` is still in the future (set from the
mandate's ``hidden_days``, e.g. during an investigation) is counted but not
shown; once that time has passed it appears like any other. ``hidden_days`` is at most
``MAX_HIDDEN_DAYS`` (ten years) wherever a mandate is made (configuration, admin API), and
the pipeline clamps it too: no embargo may overflow a 64-bit time.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from gateway.core.errors import REASONS, GatewayError, Reason
from gateway.core.types import AuditRecord, EventKind, StoredAuditRecord

__all__ = [
    "EXPORT_COLUMNS",
    "MAX_HIDDEN_DAYS",
    "AccessEntry",
    "Catalogue",
    "Page",
    "entry_of",
    "export_row",
    "iso_time",
    "newest_first_page",
    "page_of",
    "page_token",
    "parse_bound",
    "parse_page_token",
    "parse_page_token_of",
    "parse_sequence",
    "split_embargo",
]

MAX_PAGE_SIZE = 200
CHECKED = "checked"          # outcome shown for an access check ("checked whether it could access ...")
_STAFF = "passerelle-staff"  # agency id shown when gateway staff, not the agency, made the check
DEFAULT_PAGE_SIZE = 50
#: The longest embargo a mandate may set (days): ten years, far inside a 64-bit µs time.
MAX_HIDDEN_DAYS = 3650
#: The largest sequence number or id a store holds (SQLite and PostgreSQL integers are 64-bit).
MAX_INT64 = 2**63 - 1
_MAX_TOKEN_CHARS = 64
#: RFC 3339 as the APIs take it: a full date, or a date and time (seconds, optional fraction up to µs,
#: optional offset; none means UTC). ASCII only: ``date.fromisoformat`` also reads week dates and more.
_RFC3339_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RFC3339_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """What turns codes into words: agencies, purposes, legal bases, field categories, reasons."""

    agencies: Mapping[str, str]                        # consumer id -> display name
    purposes: Mapping[str, Mapping[str, str]]          # code -> {fr, de, en}
    legal_bases: Mapping[str, str]                     # code -> title
    categories: Mapping[str, Mapping[str, str]]        # service full name -> field -> category
    #: service full name -> field -> {fr, de, en}: the contracts' names for people
    display_names: Mapping[str, Mapping[str, Mapping[str, str]]] = field(default_factory=dict)
    agency_names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)        # id -> {fr, de, en}
    legal_references: Mapping[str, Mapping[str, str]] = field(default_factory=dict)    # reference -> {fr, de, en}


@dataclass(frozen=True, slots=True)
class AccessEntry:
    id: int
    time_us: int
    agency_id: str
    agency_name: str
    service: str
    data_fields: tuple[tuple[str, str], ...]           # (field, category)
    purpose: str
    purpose_title: Mapping[str, str]
    legal_basis: str
    legal_basis_title: str
    legal_reference: str
    consent_id: str
    outcome: str
    reason: str
    reason_title: str
    ai_system: str
    record_hash: str
    subject_role: str = "data_subject"   # "third_party": disclosed in an answer about another person
    data_field_names: tuple[Mapping[str, str], ...] = ()   # beside data_fields: each one's {fr, de, en}
    agency_names: Mapping[str, str] = field(default_factory=dict)             # {fr, de, en}
    legal_reference_title: Mapping[str, str] = field(default_factory=dict)    # {fr, de, en}, where configured
    bulk: bool = False                  # one item of a bulk look-up (the record's extra["bulk"])
    notification: bool = False          # a change notification (extra["notification"]): "<agency> was notified"
    changed_categories: tuple[str, ...] = ()   # what changed, for a notification ("ADDRESS",)


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[AccessEntry]
    next_after: int            # 0 when this is the last page
    total: int                 # visible entries over all pages
    hidden: int


def iso_time(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / 1e6, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_check(r: AuditRecord) -> bool:
    return r.kind is EventKind.ADMIN and r.extra.get("action") == "access-check"


def _check_entry(stored: StoredAuditRecord, cat: Catalogue) -> AccessEntry:
    r = stored.record
    answer = r.extra.get("answer", "")
    by_staff = r.extra.get("actor", "").startswith("staff:")
    agency = _STAFF if by_staff else r.consumer
    return AccessEntry(
        id=stored.seq, time_us=r.time_us, agency_id=agency,
        agency_name="Passerelle staff" if by_staff else cat.agencies.get(r.consumer, r.consumer),
        service=r.extra.get("checked_service", ""), data_fields=(), purpose=r.purpose,
        purpose_title=dict(cat.purposes.get(r.purpose, {})), legal_basis="", legal_basis_title="",
        legal_reference="", consent_id="", outcome=CHECKED, reason=answer, reason_title=_reason_title(answer),
        ai_system="", record_hash=stored.hash,
    )  # fmt: skip


def _reason_title(reason: str) -> str:
    try:
        return REASONS[Reason(reason)].title if reason else ""
    except ValueError:
        return ""


def entry_of(stored: StoredAuditRecord, cat: Catalogue) -> AccessEntry:
    r = stored.record
    if _is_check(r):
        return _check_entry(stored, cat)
    categories = cat.categories.get(r.service, {})
    names = cat.display_names.get(r.service, {})
    held_in = r.extra.get("disclosed_in", "")   # a third party's fields are named within their own message
    prefix = f"{held_in}." if held_in else ""
    reason_title = ""
    if r.reason:
        try:
            reason_title = REASONS[Reason(r.reason)].title
        except ValueError:
            reason_title = ""
    return AccessEntry(
        id=stored.seq, time_us=r.time_us, agency_id=r.consumer, agency_name=cat.agencies.get(r.consumer, r.consumer),
        service=r.service, data_fields=tuple((f, categories.get(prefix + f, "")) for f in r.fields),
        purpose=r.purpose, purpose_title=dict(cat.purposes.get(r.purpose, {})), legal_basis=r.legal_basis,
        legal_basis_title=cat.legal_bases.get(r.legal_basis, ""), legal_reference=r.legal_reference,
        consent_id=r.consent_id, outcome=r.outcome.value, reason=r.reason, reason_title=reason_title,
        ai_system=r.ai_system, record_hash=stored.hash, subject_role=r.subject_role.value,
        data_field_names=tuple(names.get(prefix + f, {}) for f in r.fields),
        agency_names=dict(cat.agency_names.get(r.consumer, {})),
        legal_reference_title=dict(cat.legal_references.get(r.legal_reference, {})),
        bulk=r.extra.get("bulk") == "1", notification=r.extra.get("notification") == "1",
        changed_categories=tuple(c for c in r.extra.get("changed", "").split(",") if c),
    )  # fmt: skip


def split_embargo(records: Iterable[StoredAuditRecord], now_us: int) -> tuple[list[StoredAuditRecord], int]:
    """Exchanges and access checks the citizen may see now, and how many are still under embargo."""
    shown: list[StoredAuditRecord] = []
    hidden = 0
    for s in records:
        if s.record.kind is not EventKind.EXCHANGE and not _is_check(s.record):
            continue
        if s.record.hidden_until_us > now_us:
            hidden += 1
        else:
            shown.append(s)
    return shown, hidden


def page_of(visible: Sequence[StoredAuditRecord], hidden: int, *, after: int, size: int, cat: Catalogue) -> Page:
    """One page of ``visible`` (ascending seq) after seq ``after``."""
    size = DEFAULT_PAGE_SIZE if size <= 0 else min(size, MAX_PAGE_SIZE)
    rest = [s for s in visible if s.seq > after]
    chosen = rest[:size]
    next_after = chosen[-1].seq if len(rest) > size else 0
    return Page([entry_of(s, cat) for s in chosen], next_after, len(visible), hidden)


def newest_first_page(visible: Sequence[StoredAuditRecord], hidden: int, *, before: int, size: int,
                      cat: Catalogue) -> Page:  # fmt: skip
    """One page of ``visible`` (ascending seq) newest first: the entries before seq ``before`` (0: from
    the newest). The next page continues before the last seq shown (``next_after``), so records
    appended meanwhile neither shift nor repeat entries; they show on a fresh first page."""
    size = DEFAULT_PAGE_SIZE if size <= 0 else min(size, MAX_PAGE_SIZE)
    rest = [s for s in reversed(visible) if not before or s.seq < before]
    chosen = rest[:size]
    next_before = chosen[-1].seq if len(rest) > size else 0
    return Page([entry_of(s, cat) for s in chosen], next_before, len(visible), hidden)


def page_token(after: int, kind: str = "after") -> str:
    return base64.urlsafe_b64encode(f"{kind}:{after}".encode()).decode().rstrip("=")


def parse_page_token(token: str) -> int:
    """The seq a page token continues after; ``INVALID_ARGUMENT`` if it is not one of ours."""
    return parse_page_token_of(token, "after")


def parse_page_token_of(token: str, kind: str) -> int:
    """A page token ``base64url(kind:N)`` with ``0 <= N <= MAX_INT64``, or ``INVALID_ARGUMENT``; '' is 0."""
    if not token:
        return 0
    after = -1
    if len(token) <= _MAX_TOKEN_CHARS:
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        except (ValueError, binascii.Error):
            text = ""
        found, _, value = text.partition(":")
        after = parse_sequence(value) if found == kind else -1
    if after < 0:
        raise GatewayError(Reason.INVALID_ARGUMENT, "page_token is not from a previous page", field="page_token")
    return after


def parse_sequence(text: str) -> int:
    """An ASCII decimal within ``0..MAX_INT64`` (at most 19 digits), else -1; read before any ``int()``
    so that no length of digits costs more than a few bytes (``int()`` refuses past 4300 digits)."""
    if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        return -1
    value = int(text)
    return value if value <= MAX_INT64 else -1


def parse_bound(value: str, *, name: str, end: bool) -> int | None:
    """An RFC 3339 date or timestamp as epoch µs; a date as ``until`` includes the whole day.

    Every caller-given date or time of the APIs is read here: ASCII RFC 3339 only, and any value whose
    bound falls outside the calendar (``until=9999-12-31`` ends after year 9999) is ``INVALID_ARGUMENT``,
    never an overflow."""
    if not value:
        return None
    problem = GatewayError(Reason.INVALID_ARGUMENT, f"{name} is not an RFC 3339 date or timestamp", field=name)
    try:
        if _RFC3339_DATE.fullmatch(value):
            d = date.fromisoformat(value)
            start = datetime(d.year, d.month, d.day, tzinfo=UTC)
            moment = start + timedelta(days=1) if end else start
        elif _RFC3339_TIME.fullmatch(value):
            moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        else:
            raise problem
        return int(moment.timestamp() * 1_000_000)
    except ValueError:
        raise problem from None
    except OverflowError:
        raise GatewayError(Reason.INVALID_ARGUMENT, f"{name} is out of range", field=name) from None


EXPORT_COLUMNS = (
    "id", "time", "agency_id", "agency_name", "service", "data_fields", "purpose", "purpose_title_fr",
    "purpose_title_de", "purpose_title_en", "legal_basis", "legal_basis_title", "legal_reference",
    "consent_id", "outcome", "reason", "reason_title", "ai_system", "record_hash", "subject_role",
)  # fmt: skip


def export_row(e: AccessEntry) -> tuple[str, ...]:
    """One CSV row per access; data fields as ``name (CATEGORY)`` separated by ``; ``."""
    fields = "; ".join(f"{n} ({c})" if c else n for n, c in e.data_fields)
    t = e.purpose_title
    return (
        str(e.id), iso_time(e.time_us), e.agency_id, e.agency_name, e.service, fields, e.purpose,
        t.get("fr", ""), t.get("de", ""), t.get("en", ""), e.legal_basis, e.legal_basis_title,
        e.legal_reference, e.consent_id, e.outcome, e.reason, e.reason_title, e.ai_system, e.record_hash,
        e.subject_role,
    )  # fmt: skip
