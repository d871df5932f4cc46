"""The pure decision core: purposes, mandates, consents and the decisions over them.

Standard library only; no I/O; time is passed in. The gateway, the admin API and
the citizen page all explain decisions with the same text produced here.
"""

from consent.codec import mandate_from_dict, mandate_to_dict
from consent.decide import ConsentDecision, Decision, allowed_fields, authorise, check_consent, consent_status
from consent.explain import AccessExplanation, explain_access
from consent.fields import ancestors, category_problem
from consent.limits import describe_limit, limit_error, limit_problem
from consent.model import CONSENT_BASES, LEGAL_BASES, LIMIT_OPS, Consent, Limit, Mandate, Purpose
from consent.policy import Policy

__all__ = [
    "CONSENT_BASES",
    "LEGAL_BASES",
    "LIMIT_OPS",
    "AccessExplanation",
    "Consent",
    "ConsentDecision",
    "Decision",
    "Limit",
    "Mandate",
    "Policy",
    "Purpose",
    "allowed_fields",
    "ancestors",
    "authorise",
    "category_problem",
    "check_consent",
    "consent_status",
    "describe_limit",
    "explain_access",
    "limit_error",
    "limit_problem",
    "mandate_from_dict",
    "mandate_to_dict",
]
