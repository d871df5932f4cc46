"""DPoP (RFC 9449): proofs of possession for REST calls, made by clients and checked by the gateway.

A DPoP-bound access token carries ``cnf.jkt``, the RFC 7638 thumbprint of the
client's public key. Each request then carries a fresh proof (header ``DPoP``):
a JWT of type ``dpop+jwt`` signed by that key, with the public key in its
header, bound to the HTTP method (``htm``), the URL without query or fragment
(``htu``), the time (``iat``) and the access token (``ath``). A proof's ``jti``
is accepted once: ``check_proof`` does every other check and says how long its
use must be remembered, so that a store shared by every process can record it
(``gateway.core.ports.ProofReplayStore``). Claims are read strictly
(``gateway.core.claims``): ``iat`` is a finite number, the others strings.

Agencies: ``make_proof(private_key, "GET", url, access_token)`` before each call.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
from cachetools import TTLCache

from gateway.core.claims import ClaimProblem, check_claims, check_strings, has_non_finite, strict_segment
from gateway.core.errors import GatewayError, Reason

__all__ = [
    "PROOF_CLAIMS", "CheckedProof", "ReplayCache", "check_proof", "jwk_thumbprint", "key_thumbprint", "make_proof",
    "normalise_htu", "token_hash", "verify_proof",
]

PROOF_CLAIMS = ("jti", "htm", "htu", "iat")

DPOP_ALGORITHMS = frozenset({"ES256", "ES384", "EdDSA", "RS256", "PS256"})
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})
MAX_PROOF_BYTES = 4096


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK, base64url."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None or any(not isinstance(jwk.get(m), str) for m in members):
        raise ValueError("unsupported or incomplete JWK")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def token_hash(access_token: str) -> str:
    """The ``ath`` claim: base64url SHA-256 of the access token."""
    return _b64(hashlib.sha256(access_token.encode("ascii")).digest())


def normalise_htu(url: str) -> str:
    """Scheme and host lower-cased, default port dropped, query and fragment removed (RFC 9449 §4.3)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    netloc = host if port in (None, default) else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", "", ""))


def _to_jwk(public_key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return jwt.algorithms.ECAlgorithm.to_jwk(public_key)
    if isinstance(public_key, rsa.RSAPublicKey):
        return jwt.algorithms.RSAAlgorithm.to_jwk(public_key)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return jwt.algorithms.OKPAlgorithm.to_jwk(public_key)
    raise TypeError("unsupported key type")


def _alg_for(jwk: dict[str, Any]) -> str:
    return {"EC": "ES256", "RSA": "PS256", "OKP": "EdDSA"}[str(jwk["kty"])]


def make_proof(
    private_key: Any, method: str, url: str, access_token: str | None = None, *,
    now: float | None = None, jti: str | None = None, algorithm: str | None = None,
) -> str:
    """A DPoP proof for one request. ``url`` is the full request URL (its query is ignored)."""
    jwk = {k: v for k, v in json.loads(_to_jwk(private_key.public_key())).items() if k not in ("alg", "use", "kid")}
    claims: dict[str, Any] = {
        "jti": jti or uuid.uuid4().hex, "htm": method.upper(), "htu": normalise_htu(url),
        "iat": int(time.time() if now is None else now),
    }
    if access_token is not None:
        claims["ath"] = token_hash(access_token)
    alg = algorithm or _alg_for(jwk)
    return jwt.encode(claims, private_key, algorithm=alg, headers={"typ": "dpop+jwt", "jwk": jwk})


def key_thumbprint(private_or_public_key: Any) -> str:
    """``cnf.jkt`` for a key: what the identity provider puts in a DPoP-bound token."""
    key = private_or_public_key
    public = key.public_key() if hasattr(key, "private_bytes") else key
    return jwk_thumbprint(json.loads(_to_jwk(public)))


class ReplayCache:
    """Proof ``jti``s seen within the acceptance window (bounded; per process)."""

    def __init__(self, ttl_s: float, maxsize: int = 100_000, *, clock: Any = time.time) -> None:
        self._seen: TTLCache[str, bool] = TTLCache(maxsize=maxsize, ttl=ttl_s, timer=clock)

    def first_use(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = True
        return True


def _refuse(detail: str) -> GatewayError:
    return GatewayError(Reason.DPOP_PROOF_INVALID, detail)


def _header(proof: str) -> tuple[str, dict[str, Any]]:
    try:
        header = strict_segment(proof, 0)
    except ValueError:
        raise _refuse("The DPoP proof is not a well-formed JWT") from None
    if has_non_finite(header):
        raise _refuse("The DPoP proof is not a well-formed JWT")
    alg, jwk = header.get("alg"), header.get("jwk")
    if header.get("typ") != "dpop+jwt" or alg not in DPOP_ALGORITHMS:
        raise _refuse("The DPoP proof has the wrong type or algorithm")
    if not isinstance(jwk, dict) or _PRIVATE_MEMBERS & set(jwk):
        raise _refuse("The DPoP proof must carry a public JWK")
    return str(alg), jwk


@dataclass(frozen=True, slots=True)
class CheckedProof:
    """A proof that passed every check but reuse: its key's thumbprint, and how to record its use.

    ``replay_key`` is the SHA-256 of the key's thumbprint and the proof's ``jti`` (hex); it must be
    recorded until ``expires_at``, after which the proof is refused as too old anyway.
    """

    thumbprint: str
    replay_key: str
    expires_at: float


def _claims(proof: str, alg: str, jwk: dict[str, Any]) -> tuple[dict[str, Any], str]:
    try:
        key = jwt.PyJWK(jwk, algorithm=alg)
        jwt.api_jws.PyJWS().decode_complete(proof, key, algorithms=[alg])   # the signature only: claims below
        thumbprint = jwk_thumbprint(jwk)
        claims = strict_segment(proof, 1)   # the signed bytes, read without NaN or duplicated members
    except (jwt.exceptions.PyJWTError, ValueError, TypeError):
        raise _refuse("The DPoP proof's signature or claims are invalid") from None
    try:
        check_claims(claims, PROOF_CLAIMS)
        check_strings(claims, ("htm", "htu", "ath", "nonce"))
    except ClaimProblem as problem:
        raise GatewayError(Reason.DPOP_PROOF_INVALID, f"DPoP proof: {problem}",
                           metadata={"claim": problem.claim}) from None
    return claims, thumbprint


def check_proof(
    proof: str, *, method: str, url: str, access_token: str, now: float, max_age_s: float, leeway_s: float,
) -> CheckedProof:
    """Every check of one proof for this request and token except reuse (see ``CheckedProof``)."""
    if not proof or len(proof) > MAX_PROOF_BYTES:
        raise _refuse("A DPoP proof is required" if not proof else "The DPoP proof is too large")
    alg, jwk = _header(proof)
    claims, thumbprint = _claims(proof, alg, jwk)
    if claims["htm"] != method.upper() or claims["htu"] != normalise_htu(url):
        raise _refuse("The DPoP proof was made for another method or URL")
    iat = claims["iat"]
    if not now - max_age_s - leeway_s <= iat <= now + leeway_s:
        raise _refuse("The DPoP proof is too old or from the future")
    if claims.get("ath") != token_hash(access_token):
        raise _refuse("The DPoP proof was made for another access token")
    replay_key = hashlib.sha256(f"{thumbprint}:{claims['jti']}".encode()).hexdigest()
    return CheckedProof(thumbprint, replay_key, float(iat) + max_age_s + leeway_s)


def verify_proof(
    proof: str, *, method: str, url: str, access_token: str, now: float, max_age_s: float, leeway_s: float,
    replay: ReplayCache,
) -> str:
    """``check_proof``, then reuse in this process; return the key's thumbprint (to compare with ``cnf.jkt``)."""
    checked = check_proof(proof, method=method, url=url, access_token=access_token, now=now,
                          max_age_s=max_age_s, leeway_s=leeway_s)
    if not replay.first_use(checked.replay_key):
        raise _refuse("The DPoP proof was already used")
    return checked.thumbprint
