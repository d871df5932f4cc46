"""P-256 public keys as JWKs (RFC 7517), ``kid`` the RFC 7638 thumbprint: one rule for file and token keys."""

from __future__ import annotations

import base64
import hashlib
import json

__all__ = ["p256_jwk"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def p256_jwk(x: bytes, y: bytes) -> dict[str, str]:
    """The public JWK of a P-256 point for ES256, with its thumbprint as ``kid``."""
    public = {"crv": "P-256", "kty": "EC", "x": _b64url(x), "y": _b64url(y)}
    canonical = json.dumps(public, separators=(",", ":"), sort_keys=True).encode()
    return {**public, "kid": _b64url(hashlib.sha256(canonical).digest()), "use": "sig", "alg": "ES256"}
