"""Consent receipts: compact JWS (ES256) by the gateway's receipt key, and the key published as JWKS.

The payload follows the Kantara Consent Receipt v1.1 field names, with the
ISO/IEC TS 27560 record fields that Kantara lacks (lawful basis, retention,
validity, events). The receipt key is never the checkpoint key: it is a ``ReceiptKey``
(a PKCS#11 token in production, a file in demo mode). Anyone can verify a receipt with ``GET /.well-known/jwks.json``
(published by ``gateway.entrypoints.routes_keys``; ``verify_receipt`` below, or
``gateway consent verify-receipt FILE``).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jwt

from consent import LEGAL_BASES, Consent, Purpose
from gateway.core.errors import GatewayError, Reason
from gateway.core.ports import ReceiptKey

__all__ = ["RECEIPT_TYPE", "ReceiptError", "ReceiptSigner", "receipt_claims", "verify_receipt"]

RECEIPT_TYPE = "consent-receipt+jwt"
_ALGORITHM = "ES256"
log = logging.getLogger("passerelle.keys")


class ReceiptError(Exception):
    """The receipt does not verify (bad signature, unknown key, malformed)."""


class ReceiptSigner:
    """Signs receipts as compact JWS through a ``ReceiptKey`` (a demo file or a PKCS#11 token).

    The JWS is built here (RFC 7515 §7.1: ``b64(header).b64(payload)``, signed as raw r || s), so the
    private key stays wherever the ``ReceiptKey`` keeps it (``adapters.keys``: a file key reads a PEM).
    """

    def __init__(self, key: ReceiptKey, *, issuer: str) -> None:
        self._key = key
        self.issuer = issuer
        self.public_jwk = key.public_jwk
        self.kid = self.public_jwk["kid"]

    @property
    def is_demo(self) -> bool:
        return self._key.is_demo

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}

    def sign(self, claims: Mapping[str, Any]) -> str:
        """The compact JWS; raises ``GatewayError(INTERNAL)`` (logged) when the key cannot sign."""
        header = {"alg": _ALGORITHM, "kid": self.kid, "typ": RECEIPT_TYPE}
        signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}"
        try:
            signature = self._key.sign(signing_input.encode())
        except OSError as exc:
            log.error("consent receipt not signed: %s", exc, extra={"fields": {"kid": self.kid}})
            raise GatewayError(Reason.INTERNAL, "The consent receipt could not be signed") from None
        return f"{signing_input}.{_b64(signature)}"


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(value), separators=(",", ":"), ensure_ascii=False).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rfc3339(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat().replace("+00:00", "Z") if us else ""


def receipt_claims(
    c: Consent,
    purpose: Purpose,
    *,
    issuer: str,
    consumer_name: str,
    legal_basis: str,
    legal_reference: str,
    services: list[str],
    language: str,
    jurisdiction: str = "LU",
) -> dict[str, Any]:
    """The receipt's payload. ``piiPrincipalId`` is the keyed pseudonym, never the national id."""
    return {
        "iss": issuer,
        "iat": c.granted_us // 1_000_000,
        "jti": c.id,
        "version": "KI-CR-v1.1.0",
        "schemaVersion": "ISO/IEC TS 27560:2023",
        "jurisdiction": jurisdiction,
        "consentTimestamp": c.granted_us // 1_000_000,
        "collectionMethod": "Passerelle citizen API (POST /v1/me/consents)",
        "consentReceiptID": c.id,
        "language": language,
        "piiPrincipalId": c.subject,
        "piiControllers": [{"piiController": consumer_name, "controllerId": c.consumer}],
        "policyUrl": purpose.legal_url,
        "services": [
            {
                "service": s,
                "purposes": [
                    {
                        "purpose": purpose.title.get(language, purpose.code),
                        "purposeCategory": [purpose.code],
                        "consentType": "EXPLICIT",
                        "piiCategory": sorted(c.categories),
                        "primaryPurpose": True,
                        "termination": _rfc3339(c.expires_us) or "on revocation",
                        "thirdPartyDisclosure": False,
                    }
                ],
            }
            for s in services
        ],
        "sensitive": legal_basis.startswith("A9"),
        "lawfulBasis": {"code": legal_basis, "title": LEGAL_BASES.get(legal_basis, ""), "reference": legal_reference},
        "retentionDays": purpose.retention_days,
        "validity": {"from": _rfc3339(c.granted_us), "until": _rfc3339(c.expires_us), "singleUse": c.single_use},
        "procedureId": c.procedure_id,
        "withdrawalMethod": f"DELETE /v1/me/consents/{c.id}",
        "events": [{"time": _rfc3339(c.granted_us), "type": "Given", "state": "ACTIVE"}],
    }


def verify_receipt(token: str, jwks: Mapping[str, Any]) -> dict[str, Any]:
    """Check the receipt's signature against the published keys; return its payload."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise ReceiptError(f"not a JWS: {exc}") from None
    if header.get("alg") != _ALGORITHM or header.get("typ") != RECEIPT_TYPE:
        raise ReceiptError("not a Passerelle consent receipt (alg or typ)")
    keys = {k.get("kid"): k for k in jwks.get("keys", [])}
    jwk = keys.get(header.get("kid"))
    if jwk is None:
        raise ReceiptError("signed by a key that is not published")
    try:
        public = jwt.PyJWK.from_dict(dict(jwk)).key
        claims: dict[str, Any] = jwt.decode(
            token, public, algorithms=[_ALGORITHM], options={"verify_aud": False, "verify_exp": False}
        )
    except jwt.InvalidTokenError as exc:
        raise ReceiptError(f"signature check failed: {exc}") from None
    return claims
