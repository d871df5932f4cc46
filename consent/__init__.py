"""The pure decision core: purposes, mandates, consents and the decisions over them.

Standard library only; no I/O; time is passed in. The gateway, the admin API and
the citizen page all explain decisions with the same text produced here.
"""

from consent.decide import ConsentDecision, Decision, allowed_fields, authorise, check_consent
from consent.model import LEGAL_BASES, Consent, Mandate, Purpose
from consent.policy import Policy

__all__ = [
    "LEGAL_BASES",
    "Consent",
    "ConsentDecision",
    "Decision",
    "Mandate",
    "Policy",
    "Purpose",
    "allowed_fields",
    "authorise",
    "check_consent",
]
