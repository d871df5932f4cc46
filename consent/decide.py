"""Decisions are values: each function returns what it decided and why."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consent.model import Consent, Mandate, Purpose

__all__ = ["ConsentDecision", "Decision", "allowed_fields", "authorise", "check_consent"]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str                      # a gateway reason code, "" when allowed
    explanation: str                 # human text, shown to agencies and citizens
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
) -> Decision:
    """Deny by default: allow only if a valid mandate names this consumer, service and purpose."""
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
        mandate = live[0]
        return Decision(True, "", f"Mandate '{mandate.id}' allows it under {mandate.legal_basis}.", mandate)
    if all(m.valid_from_us > now_us for m in for_purpose):
        return Decision(False, "MANDATE_NOT_YET_VALID", f"Mandate '{for_purpose[0].id}' is not valid yet.")
    return Decision(False, "MANDATE_EXPIRED", f"Mandate '{for_purpose[0].id}' has expired.")


def _in_window(m: Mandate, now_us: int) -> bool:
    return m.valid_from_us <= now_us and (m.valid_until_us == 0 or now_us < m.valid_until_us)


def allowed_fields(mandate: Mandate, field_categories: Mapping[str, str]) -> frozenset[str]:
    """Response fields the mandate allows: named ones plus those of a named category."""
    return frozenset(
        name
        for name, category in field_categories.items()
        if name in mandate.fields or (category and category in mandate.categories)
    )


def check_consent(
    consents: Iterable[Consent],
    *,
    subject: str,
    consumer: str,
    purpose: str,
    now_us: int,
    consent_id: str = "",
    needed_categories: frozenset[str] = frozenset(),
) -> ConsentDecision:
    """Find a live consent of ``subject`` for ``consumer`` and ``purpose``.

    When the caller names a consent (``x-consent-id``) only that one is considered.
    The most specific refusal wins, so that an agency learns *why* (revoked,
    expired, spent) rather than a bare "no consent".
    """
    candidates = [c for c in consents if not consent_id or c.id == consent_id]
    matching = [c for c in candidates if c.subject == subject and c.consumer == consumer and c.purpose == purpose]
    if consent_id and candidates and not matching:
        return ConsentDecision(False, "CONSENT_MISMATCH", "The named consent is for another subject, consumer or purpose.")
    if not matching:
        return ConsentDecision(False, "CONSENT_REQUIRED", "No consent of the data subject for this consumer and purpose.")
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
            return ConsentDecision(True, "", f"Consent '{c.id}' is live.", c)
    return refusal


def _prefer(a: ConsentDecision, b: ConsentDecision) -> ConsentDecision:
    """The most recent consent's refusal wins; a bare CONSENT_REQUIRED never beats a specific one."""
    return b if a.reason == "CONSENT_REQUIRED" else a
