"""Strict verification of bearer JWTs (pyjwt), mapped to a ``Principal``.

Rules: tokens are size-capped before any decoding; the issuer is found by
``iss``, the key by ``kid`` (only as a lookup), the algorithm must be on the
issuer's allow-list (asymmetric only); ``iss aud sub exp iat jti`` are required;
lifetime is capped; a small leeway absorbs clock skew. Verified tokens are kept
in a bounded cache keyed by their SHA-256, never longer than they are valid.
The consumer identity comes from the verified token, never from a header.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cachetools import TTLCache

from gateway.core.errors import GatewayError, Reason

__all__ = ["ASYMMETRIC_ALGORITHMS", "Issuer", "Principal", "TokenVerifier"]

ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "ES384", "EdDSA", "RS256", "PS256", "RS384", "PS384"})
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "jti"]


@dataclass(frozen=True)
class Issuer:
    """A trusted token issuer. ``role`` says what its subjects are: agency, citizen or staff."""

    id: str
    issuer: str
    role: str                                     # "agency" | "citizen" | "staff"
    algorithms: frozenset[str]
    keys: Mapping[str, Any] = field(default_factory=dict)   # kid -> public key object

    def __post_init__(self) -> None:
        bad = set(self.algorithms) - ASYMMETRIC_ALGORITHMS
        if bad:
            raise ValueError(f"issuer {self.id}: algorithms not allowed: {sorted(bad)}")


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str            # "consumer" | "citizen" | "staff"
    id: str              # consumer id, citizen's national id, or staff subject
    issuer: str
    jti: str
    expires_at: float
    scopes: frozenset[str]
    claims: Mapping[str, Any]


_PYJWT_REASONS: list[tuple[type[Exception], Reason]] = [
    (jwt.ExpiredSignatureError, Reason.TOKEN_EXPIRED),
    (jwt.ImmatureSignatureError, Reason.TOKEN_NOT_YET_VALID),
    (jwt.DecodeError, Reason.TOKEN_MALFORMED),
    (jwt.InvalidTokenError, Reason.TOKEN_INVALID),
]


class TokenVerifier:
    def __init__(
        self,
        issuers: Mapping[str, Issuer],
        consumers: Mapping[tuple[str, str], str],
        *,
        audience: str,
        max_lifetime_s: int = 900,
        leeway_s: int = 30,
        max_token_bytes: int = 8192,
        cache_size: int = 10_000,
        clock: Callable[[], float],
    ) -> None:
        self._issuers = {i.issuer: i for i in issuers.values()}
        self._consumers = consumers      # (issuer id, sub) -> consumer id
        self._audience = audience
        self._max_lifetime = max_lifetime_s
        self._leeway = leeway_s
        self._max_bytes = max_token_bytes
        self._clock = clock
        self._cache: TTLCache[bytes, Principal] = TTLCache(maxsize=cache_size, ttl=max_lifetime_s + leeway_s)
        self.revoked_jtis: set[str] = set()
        self.revoked_consumers: set[str] = set()

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise GatewayError(Reason.TOKEN_MISSING)
        if len(token) > self._max_bytes:
            raise GatewayError(Reason.TOKEN_TOO_LARGE)
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        principal = self._cache.get(key)
        if principal is None or principal.expires_at + self._leeway <= now:
            principal = self._verify_uncached(token, now)
            self._cache[key] = principal
        self._check_revocation(principal)
        return principal

    def _check_revocation(self, p: Principal) -> None:
        if p.jti in self.revoked_jtis or (p.kind == "consumer" and p.id in self.revoked_consumers):
            raise GatewayError(Reason.TOKEN_REVOKED)

    def revoke_jti(self, jti: str) -> None:
        self.revoked_jtis.add(jti)

    def revoke_consumer(self, consumer: str) -> None:
        self.revoked_consumers.add(consumer)

    def _verify_uncached(self, token: str, now: float) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise GatewayError(Reason.TOKEN_MALFORMED) from None
        issuer = self._issuers.get(str(unverified.get("iss", "")))
        if issuer is None:
            raise GatewayError(Reason.UNKNOWN_ISSUER)
        alg = header.get("alg")
        if alg not in issuer.algorithms:
            raise GatewayError(Reason.TOKEN_INVALID, "The token's algorithm is not allowed for its issuer")
        public_key = self._key_for(issuer, header.get("kid"))
        claims = self._decode(token, public_key, alg, issuer, now)
        if int(claims["exp"]) - int(claims["iat"]) > self._max_lifetime:
            raise GatewayError(Reason.TOKEN_LIFETIME_TOO_LONG)
        return self._principal(issuer, claims)

    def _key_for(self, issuer: Issuer, kid: object) -> Any:
        if not isinstance(kid, str) or kid not in issuer.keys:
            raise GatewayError(Reason.UNKNOWN_KEY)
        return issuer.keys[kid]

    def _decode(self, token: str, key: Any, alg: str, issuer: Issuer, now: float) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=issuer.issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS, "verify_iat": True, "strict_aud": False},
            )
        except Exception as exc:  # pyjwt raises several families; map each once here
            raise GatewayError(_map_pyjwt(exc)) from None
        if float(claims["iat"]) > now + self._leeway:
            raise GatewayError(Reason.TOKEN_NOT_YET_VALID)
        return claims

    def _principal(self, issuer: Issuer, claims: Mapping[str, Any]) -> Principal:
        sub = str(claims["sub"])
        scopes = frozenset(str(claims.get("scope", "")).split())
        if issuer.role == "agency":
            consumer = self._consumers.get((issuer.id, sub))
            if consumer is None:
                raise GatewayError(Reason.UNKNOWN_CONSUMER)
            kind, ident = "consumer", consumer
        elif issuer.role == "citizen":
            kind, ident = "citizen", sub
        else:
            kind, ident = "staff", sub
        return Principal(kind, ident, issuer.id, str(claims["jti"]), float(claims["exp"]), scopes, dict(claims))


def _map_pyjwt(exc: Exception) -> Reason:
    for cls, reason in _PYJWT_REASONS:
        if isinstance(exc, cls):
            return reason
    return Reason.TOKEN_INVALID
