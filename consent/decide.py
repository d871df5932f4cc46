"""Decisions are values: each function returns what it decided and why."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consent.fields import allowed_fields
from consent.limits import limit_problem
from consent.model import Consent, Mandate, Purpose

__all__ = ["ConsentDecision", "Decision", "allowed_fields", "authorise", "check_consent", "consent_status"]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str  # a gateway reason code, "" when allowed
    explanation: str  # human text, shown to agencies and citizens
    mandate: Mandate | None = None


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    allowed: bool
    reason: str
    explanation: str
    consent: Consent | None = None


def authorise(
    mandates: Iterable[Mandate],
    purposes: Mapping[str, Purpose],
    *,
    consumer: str,
    service: str,
    purpose: str,
    now_us: int,
    request_fields: Mapping[str, object] | None = None,
) -> Decision:
    """Deny by default: allow only if a valid mandate names this consumer, service and purpose.

    With ``request_fields`` the mandates' limits are checked too; without them
    (an access check that names no request) limits are left to the lookup itself.
    """
    if purpose not in purposes:
        return Decision(False, "UNKNOWN_PURPOSE", f"Purpose '{purpose}' is not in the purposes catalogue.")
    for_service = [m for m in mandates if m.consumer == consumer and m.service == service]
    if not for_service:
        return Decision(False, "NO_MANDATE", f"Consumer '{consumer}' holds no mandate for {service}.")
    for_purpose = [m for m in for_service if purpose in m.purposes]
    if not for_purpose:
        held = ", ".join(sorted({p for m in for_service for p in m.purposes}))
        return Decision(
            False,
            "NO_MANDATE",
            f"Consumer '{consumer}' may use {service} only for: {held}; not for '{purpose}'.",
        )
    live = [m for m in for_purpose if _in_window(m, now_us)]
    if live:
        return _within_limits(live, request_fields, now_us)
    if all(m.valid_from_us > now_us for m in for_purpose):
        return Decision(False, "MANDATE_NOT_YET_VALID", f"Mandate '{for_purpose[0].id}' is not valid yet.")
    return Decision(False, "MANDATE_EXPIRED", f"Mandate '{for_purpose[0].id}' has expired.")


def _within_limits(live: list[Mandate], request_fields: Mapping[str, object] | None, now_us: int) -> Decision:
    first_problem = ""
    for mandate in live:
        problems = (
            []
            if request_fields is None
            else [p for p in (limit_problem(lim, request_fields, now_us) for lim in mandate.limits) if p]
        )
        if not problems:
            return Decision(True, "", f"Mandate '{mandate.id}' allows it under {mandate.legal_basis}.", mandate)
        first_problem = first_problem or f"Mandate '{mandate.id}' does not cover this request: {problems[0]}."
    return Decision(False, "MANDATE_LIMIT", first_problem)


def _in_window(m: Mandate, now_us: int) -> bool:
    return m.valid_from_us <= now_us and (m.valid_until_us == 0 or now_us < m.valid_until_us)


def check_consent(
    consents: Iterable[Consent],
    *,
    subject: str,
    consumer: str,
    purpose: str,
    now_us: int,
    consent_id: str = "",
    needed_categories: frozenset[str] = frozenset(),
    case_id: str = "",
    explicit_only: bool = False,
) -> ConsentDecision:
    """Find a live consent of ``subject`` for ``consumer`` and ``purpose``.

    When the caller names a consent (``x-consent-id``) only that one is considered.
    An explicit request (a consent with a ``procedure_id``) counts only for the
    lookups of its procedure (``case_id``); with ``explicit_only`` nothing else counts.
    The most specific refusal wins, so that an agency learns *why* (revoked,
    expired, spent) rather than a bare "no consent".
    """
    candidates = [c for c in consents if not consent_id or c.id == consent_id]
    matching = [c for c in candidates if c.subject == subject and c.consumer == consumer and c.purpose == purpose]
    if consent_id and candidates and not matching:
        return ConsentDecision(
            False, "CONSENT_MISMATCH", "The named consent is for another subject, consumer or purpose."
        )
    if explicit_only:
        matching = [c for c in matching if c.procedure_id]
    in_case = [c for c in matching if not c.procedure_id or c.procedure_id == case_id]
    if matching and not in_case:
        return ConsentDecision(
            False, "CONSENT_MISMATCH", "The explicit request is for another procedure than this lookup's case id."
        )
    matching = in_case
    if not matching:
        what = "explicit request" if explicit_only else "consent"
        return ConsentDecision(
            False, "CONSENT_REQUIRED", f"No {what} of the data subject for this consumer and purpose."
        )
    refusal = ConsentDecision(False, "CONSENT_REQUIRED", "No live consent.")
    for c in sorted(matching, key=lambda c: c.granted_us, reverse=True):
        if needed_categories and c.categories and not needed_categories <= c.categories:
            refusal = ConsentDecision(False, "CONSENT_MISMATCH", "The consent does not cover the data requested.", c)
        elif c.revoked_us and c.revoked_us <= now_us:
            refusal = _prefer(refusal, ConsentDecision(False, "CONSENT_REVOKED", "The consent was revoked.", c))
        elif c.expires_us and c.expires_us <= now_us:
            refusal = _prefer(refusal, ConsentDecision(False, "CONSENT_EXPIRED", "The consent has expired.", c))
        elif c.single_use and c.used_us:
            refusal = _prefer(refusal, ConsentDecision(False, "CONSENT_SPENT", "The one-exchange consent was used.", c))
        else:
            return ConsentDecision(True, "", "A live consent of the data subject covers this lookup.", c)
    return refusal


def _prefer(a: ConsentDecision, b: ConsentDecision) -> ConsentDecision:
    """The most recent consent's refusal wins; a bare CONSENT_REQUIRED never beats a specific one."""
    return b if a.reason == "CONSENT_REQUIRED" else a


def consent_status(c: Consent, now_us: int) -> str:
    """ACTIVE, REVOKED, EXPIRED or SPENT: the state shown to the citizen (W3C DPV terms in docs)."""
    if c.revoked_us and c.revoked_us <= now_us:
        return "REVOKED"
    if c.expires_us and c.expires_us <= now_us:
        return "EXPIRED"
    if c.single_use and c.used_us:
        return "SPENT"
    return "ACTIVE"
