"""Explainable access decisions: would this lookup be allowed, with which fields, and why (not)?

The same function answers agencies debugging their integration and the citizen's
page, so both read the same text. It walks the checks the exchange pipeline makes,
in the same order and with the same wording (``authorise``, ``check_consent``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consent.decide import allowed_fields, check_consent
from consent.limits import describe_limit
from consent.model import Consent, Mandate
from consent.policy import Policy

__all__ = ["AccessExplanation", "explain_access"]


@dataclass(frozen=True, slots=True)
class AccessExplanation:
    allowed: bool
    reason: str  # gateway reason code of the refusing rule, "" when allowed
    explanation: str  # the steps joined: one text for agencies and citizens
    steps: tuple[str, ...]
    mandate: Mandate | None = None
    fields: tuple[str, ...] = ()  # response fields the lookup would return
    needs_consent: bool = False
    consent: Consent | None = None


def _refuse(reason: str, steps: list[str], **kw: object) -> AccessExplanation:
    return AccessExplanation(False, reason, " ".join(steps), tuple(steps), **kw)  # type: ignore[arg-type]


def explain_access(
    policy: Policy,
    consents: Iterable[Consent],
    *,
    consumer: str,
    service: str,
    purpose: str,
    subject: str,  # keyed pseudonym, "" when the check names no subject
    now_us: int,
    field_categories: Mapping[str, str],
    request_fields: Mapping[str, object] | None = None,
    case_id: str = "",
    language: str = "en",
) -> AccessExplanation:
    steps: list[str] = []
    known = policy.purposes.get(purpose)
    if known is not None:
        title = known.title.get(language) or known.title.get("en", purpose)
        steps.append(f"Purpose '{purpose}' ({title}) is in the catalogue.")
    decision = policy.decide(
        consumer=consumer, service=service, purpose=purpose, now_us=now_us, request_fields=request_fields
    )
    steps.append(decision.explanation)
    mandate = decision.mandate
    if not decision.allowed or mandate is None:
        return _refuse(decision.reason, steps)
    if mandate.limits and request_fields is None:
        limits = "; ".join(describe_limit(lim, now_us) for lim in mandate.limits)
        steps.append(f"The lookup must also respect the mandate's limits: {limits}.")
    fields = tuple(sorted(allowed_fields(mandate, field_categories)))
    steps.append(f"It would receive: {', '.join(fields) or 'no field'}.")
    if not mandate.needs_consent:
        return AccessExplanation(True, "", " ".join(steps), tuple(steps), mandate, fields)
    if not subject:
        steps.append("The mandate needs the data subject's consent: name the subject to check it.")
        return _refuse("CONSENT_REQUIRED", steps, mandate=mandate, fields=fields, needs_consent=True)
    needed = frozenset(field_categories[f] for f in fields if field_categories.get(f))
    verdict = check_consent(
        consents,
        subject=subject,
        consumer=consumer,
        purpose=purpose,
        now_us=now_us,
        needed_categories=needed,
        case_id=case_id,
        explicit_only=mandate.explicit_request,
    )
    steps.append(verdict.explanation)
    if not verdict.allowed:
        return _refuse(
            verdict.reason, steps, mandate=mandate, fields=fields, needs_consent=True, consent=verdict.consent
        )
    return AccessExplanation(True, "", " ".join(steps), tuple(steps), mandate, fields, True, verdict.consent)
