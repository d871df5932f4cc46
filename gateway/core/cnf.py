"""Sender-constrained tokens: is this token presented by the sender it is bound to?

A token may carry a confirmation claim ``cnf`` (RFC 7800): ``x5t#S256`` binds it
to a client certificate (RFC 8705, checked on gRPC over mutual TLS) and ``jkt``
to a DPoP key (RFC 9449, checked on REST). The decision is a pure function of
the claim, the consumer's mode and the evidence the front door saw.

Modes, per consumer: ``required`` (the token must be bound, and the binding
must match), ``optional`` (a bound token must match; an unbound token is
accepted), ``off`` (bindings are not checked here: only for a deployment where
a proxy in front of the gateway enforces them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.core.errors import Reason

__all__ = ["MODES", "SenderEvidence", "cert_thumbprint", "sender_refusal"]

Mode = Literal["required", "optional", "off"]
MODES: tuple[Mode, ...] = ("required", "optional", "off")
_METHODS = ("x5t#S256", "jkt")


def cert_thumbprint(der: bytes) -> str:
    """RFC 8705 ``x5t#S256``: base64url (no padding) SHA-256 of the DER certificate."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class SenderEvidence:
    """What the front door proved about the sender: a client certificate and/or a checked DPoP key."""

    cert_sha256: str = ""
    dpop_jkt: str = ""


def _same(a: str, b: object) -> bool:
    return isinstance(b, str) and bool(a) and hmac.compare_digest(a.encode(), b.encode())


def sender_refusal(cnf: object, mode: str, evidence: SenderEvidence) -> tuple[Reason, str] | None:
    """None when the sender may use this token, else the reason and a public detail."""
    if mode == "off":
        return None
    if cnf is None:
        if mode == "required":
            return Reason.SENDER_CONSTRAINT_FAILED, "This consumer must use sender-constrained tokens"
        return None
    if not isinstance(cnf, Mapping) or not any(m in cnf for m in _METHODS):
        return Reason.SENDER_CONSTRAINT_FAILED, "The token's confirmation method is not supported"
    claims: Mapping[str, Any] = cnf
    if _same(evidence.cert_sha256, claims.get("x5t#S256")) or _same(evidence.dpop_jkt, claims.get("jkt")):
        return None
    if "jkt" in claims and not evidence.dpop_jkt and not evidence.cert_sha256:
        return Reason.DPOP_PROOF_INVALID, "A DPoP proof is required for this token"
    return Reason.SENDER_CONSTRAINT_FAILED, "The token is bound to another certificate or key"
