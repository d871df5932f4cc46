"""Strict verification of bearer JWTs (pyjwt), mapped to a ``Principal``.

Rules: tokens are size-capped before any decoding; the issuer is found by
``iss``, the key by ``kid`` (only as a lookup in the issuer's key set), the
algorithm must be on the issuer's allow-list (asymmetric only);
``iss aud sub exp iat jti`` are required; every claim the gateway reads has
one type and time claims are finite NumericDates (``gateway.core.claims``:
``"exp": NaN`` is refused, it does not "never expire"); lifetime is capped; a
small leeway absorbs clock skew; times are checked against the injected clock.

Verified tokens are kept in a bounded cache keyed by their SHA-256, each entry
living no longer than its token. Revocation (``jti``, consumer, key) and key
rotation are checked on every call, cache hit or not, so they take effect at
once. The consumer identity comes from the verified token, never from a header.

Sender constraints (``cnf``: mTLS certificate or DPoP key) are checked per call
by ``check_sender``: a proof is about one request, so it is never cached. Its
``htu`` is compared with the configured public URL, and its reuse with a store
shared by every process (``check_sender_async``). Citizens and staff are then
admitted by their own quotas (``PrincipalQuotas``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import jwt
from cachetools import TLRUCache

from gateway.core.claims import ClaimProblem, check_claims, has_non_finite, strict_segment
from gateway.core.cnf import SenderEvidence, sender_refusal
from gateway.core.dpop import CheckedProof, ReplayCache, check_proof, normalise_htu
from gateway.core.errors import GatewayError, Reason
from gateway.core.ports import ProofReplayStore
from gateway.core.quotas import PrincipalQuotas, authenticated
from gateway.core.revocation import RevocationList

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "REQUIRED_CLAIMS",
    "Issuer",
    "Principal",
    "RefreshableKeys",
    "TokenVerifier",
]

ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "ES384", "EdDSA", "RS256", "PS256", "RS384", "PS384"})
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti")
#: ``typ`` values of an access token (RFC 7519 ``JWT``, RFC 9068 ``at+jwt``), compared case-insensitively;
#: anything else (a DPoP proof's ``dpop+jwt``, an ID token ...) is another kind of JWT, never a bearer token.
ACCESS_TOKEN_TYPES = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})


@runtime_checkable
class RefreshableKeys(Protocol):
    """An issuer key set that can be fetched again (JWKS file or URL). Lookups stay in memory."""

    def __contains__(self, kid: object) -> bool: ...

    def get(self, kid: str, default: Any = None) -> Any: ...

    def request_refresh(self) -> None:
        """Schedule a rate-limited refresh in the background (for callers that cannot wait)."""
        ...

    async def refresh(self) -> bool:
        """Fetch again unless done very recently; True when the key set changed."""
        ...


@dataclass(frozen=True)
class Issuer:
    """A trusted token issuer. ``role`` says what its subjects are: agency, citizen or staff."""

    id: str
    issuer: str
    role: str                                     # "agency" | "citizen" | "staff"
    algorithms: frozenset[str]
    keys: Mapping[str, Any] = field(default_factory=dict)   # kid -> public key object (may be live)

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
    kid: str = ""        # the signing key, so that its revocation or rotation reaches cached tokens


_PYJWT_REASONS: list[tuple[type[Exception], Reason]] = [
    (jwt.InvalidSignatureError, Reason.TOKEN_INVALID),
    (jwt.MissingRequiredClaimError, Reason.TOKEN_CLAIM_MISSING),
    (jwt.InvalidAudienceError, Reason.TOKEN_WRONG_AUDIENCE),
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
        sender_modes: Mapping[str, str] | None = None,
        default_sender_mode: str = "optional",
        dpop_max_age_s: int = 60,
        revocations: RevocationList | None = None,
        public_url: str = "",
        principal_quotas: PrincipalQuotas | None = None,
    ) -> None:
        self._issuers = {i.issuer: i for i in issuers.values()}
        self._issuer_ids = {i.id: i for i in issuers.values()}
        self._consumers = consumers      # (issuer id, sub) -> consumer id
        self._audience = audience
        self._max_lifetime = max_lifetime_s
        self._leeway = leeway_s
        self._max_bytes = max_token_bytes
        self._clock = clock
        self._cache: TLRUCache[bytes, Principal] = TLRUCache(
            maxsize=cache_size, ttu=lambda _k, p, _now: p.expires_at + leeway_s, timer=clock
        )
        self._sender_modes = dict(sender_modes or {})
        self._default_sender_mode = default_sender_mode
        self._dpop_max_age = dpop_max_age_s
        self._replay = ReplayCache(ttl_s=dpop_max_age_s + 2 * leeway_s, clock=clock)
        #: Proof reuse shared by every process (set by the composition root); None: this process only.
        self.replay_store: ProofReplayStore | None = None
        #: Where agencies reach the gateway ("https://gw.example"): the origin of every DPoP ``htu``.
        self.public_url = public_url.rstrip("/")
        #: Per-principal quotas of citizens and staff (agencies have theirs in the exchange pipeline).
        self.principal_quotas = principal_quotas
        self.revocations = revocations if revocations is not None else RevocationList()
        self.cache_hits = 0      # verified-token cache, read by the metrics (hit ratio)
        self.cache_misses = 0

    def key_sets(self) -> list[Mapping[str, Any]]:
        """Each issuer's key set (the composition root starts and closes the live ones)."""
        return [i.keys for i in self._issuer_ids.values()]

    # --- tokens -------------------------------------------------------------------------------

    def verify(self, token: str | None) -> Principal:
        """Verify, using the cache; revocation and key rotation are checked even on a hit."""
        key = self._precheck(token)
        principal = self._cache.get(key)
        if (
            principal is None
            or principal.expires_at + self._leeway <= self._clock()
            or not self._key_current(principal)
        ):
            self.cache_misses += 1
            principal = self._verify_uncached(token or "", self._clock())
            self._cache[key] = principal
        else:
            self.cache_hits += 1
        self._check_revocation(principal)
        return principal

    def verify_uncached(self, token: str | None) -> Principal:
        """The full check with no cache (what every call would cost without it; used by benchmarks)."""
        self._precheck(token)
        principal = self._verify_uncached(token or "", self._clock())
        self._check_revocation(principal)
        return principal

    async def verify_async(self, token: str | None) -> Principal:
        """As ``verify``; an unknown ``kid`` first makes the issuer's key set refresh (rate-limited), once."""
        try:
            return self.verify(token)
        except GatewayError as exc:
            if exc.reason is not Reason.UNKNOWN_KEY:
                raise
            keys = self._keys_of_token(token or "")
            if keys is None:
                raise
            await keys.refresh()   # rate-limited and single-flight in the key set
        return self.verify(token)

    def _precheck(self, token: str | None) -> bytes:
        if not token:
            raise GatewayError(Reason.TOKEN_MISSING)
        if len(token) > self._max_bytes:
            raise GatewayError(Reason.TOKEN_TOO_LARGE)
        return hashlib.sha256(token.encode()).digest()

    def _key_current(self, p: Principal) -> bool:
        issuer = self._issuer_ids.get(p.issuer)
        return issuer is not None and p.kid in issuer.keys

    def _keys_of_token(self, token: str) -> RefreshableKeys | None:
        try:
            iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.InvalidTokenError:
            return None
        issuer = self._issuers.get(str(iss))
        keys = issuer.keys if issuer else None
        return keys if isinstance(keys, RefreshableKeys) else None

    def check_current(self, p: Principal) -> None:
        """A principal verified earlier is still good now: not expired (with the leeway), not revoked.

        Cheap (the revocation view is in memory): a bulk look-up asks it before each item.
        """
        if p.expires_at + self._leeway <= self._clock():
            raise GatewayError(Reason.TOKEN_EXPIRED, "The token expired during the call")
        self._check_revocation(p)

    def _check_revocation(self, p: Principal) -> None:
        detail = self.revocations.refusal(jti=p.jti, consumer=p.id if p.kind == "consumer" else "", kid=p.kid)
        if detail:
            raise GatewayError(Reason.TOKEN_REVOKED, detail)

    # Kept for callers of the first API; prefer the revocation binding, which also persists.
    @property
    def revoked_jtis(self) -> set[str]:
        return self.revocations.jtis

    @property
    def revoked_consumers(self) -> set[str]:
        return self.revocations.consumers

    def revoke_jti(self, jti: str) -> None:
        self.revocations.jtis.add(jti)

    def revoke_consumer(self, consumer: str) -> None:
        self.revocations.consumers.add(consumer)

    def _verify_uncached(self, token: str, now: float) -> Principal:
        try:
            header = strict_segment(token, 0)
            unverified = strict_segment(token, 1)
        except ValueError:
            raise GatewayError(Reason.TOKEN_MALFORMED) from None
        if has_non_finite(header):
            raise GatewayError(Reason.TOKEN_MALFORMED)
        _check_type(header)
        try:
            check_claims(unverified, REQUIRED_CLAIMS)
        except ClaimProblem as problem:
            reason = Reason.TOKEN_CLAIM_MISSING if problem.missing else Reason.TOKEN_CLAIM_INVALID
            raise GatewayError(reason, str(problem), metadata={"claim": problem.claim}) from None
        issuer = self._issuers.get(unverified["iss"])
        if issuer is None:
            raise GatewayError(Reason.UNKNOWN_ISSUER)
        alg = header.get("alg")
        if alg not in issuer.algorithms:
            raise GatewayError(Reason.TOKEN_INVALID, "The token's algorithm is not allowed for its issuer")
        kid = header.get("kid")
        public_key = self._key_for(issuer, kid)
        claims = self._decode(token, public_key, str(alg), issuer)
        self._check_times(claims, now)
        return self._principal(issuer, claims, str(kid))

    def _key_for(self, issuer: Issuer, kid: object) -> Any:
        if not isinstance(kid, str) or len(kid) > 256:
            raise GatewayError(Reason.UNKNOWN_KEY)
        key = issuer.keys.get(kid)
        if key is None and isinstance(issuer.keys, RefreshableKeys):
            issuer.keys.request_refresh()   # a file reloads now; a URL fetches in the background
            key = issuer.keys.get(kid)
        if key is None:
            raise GatewayError(Reason.UNKNOWN_KEY)
        return key

    def _decode(self, token: str, key: Any, alg: str, issuer: Issuer) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=issuer.issuer,
                # Times are checked against our clock below, not pyjwt's.
                options={"require": list(REQUIRED_CLAIMS), "verify_exp": False, "verify_nbf": False,
                         "verify_iat": False, "strict_aud": False},
            )
        except Exception as exc:  # pyjwt raises several families; map each once here
            raise GatewayError(_map_pyjwt(exc)) from None
        return claims

    def _check_times(self, claims: Mapping[str, Any], now: float) -> None:
        # Types and ranges were checked by check_claims (finite NumericDates): comparisons cannot be fooled.
        exp, iat, nbf = claims["exp"], claims["iat"], claims.get("nbf", claims["iat"])
        if exp + self._leeway <= now:
            raise GatewayError(Reason.TOKEN_EXPIRED)
        if iat > now + self._leeway or nbf > now + self._leeway:
            raise GatewayError(Reason.TOKEN_NOT_YET_VALID)
        if exp <= iat:
            raise GatewayError(Reason.TOKEN_INVALID, "The token expires before it was issued")
        if exp - iat > self._max_lifetime:
            raise GatewayError(Reason.TOKEN_LIFETIME_TOO_LONG)

    def _principal(self, issuer: Issuer, claims: Mapping[str, Any], kid: str) -> Principal:
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
        return Principal(kind, ident, issuer.id, str(claims["jti"]), float(claims["exp"]), scopes, dict(claims), kid)

    # --- sender constraints ----------------------------------------------------------------------

    def sender_mode(self, principal: Principal) -> str:
        if principal.kind == "consumer":
            return self._sender_modes.get(principal.id, self._default_sender_mode)
        return self._default_sender_mode

    def htu_for(self, url: str) -> str:
        """The ``htu`` a proof must name: the public URL's origin and prefix, then the request's path.

        ``url`` comes from the front door (built from the listening socket, never the ``Host``
        header); with ``public_url`` set only its path is kept.
        """
        if not self.public_url:
            return normalise_htu(url)
        path = urlsplit(url).path or "/"
        return normalise_htu(self.public_url + (path if path.startswith("/") else "/" + path))

    def check_sender(
        self, principal: Principal, *, token: str, cert_sha256: str = "", dpop_proof: str = "",
        method: str = "", url: str = "",
    ) -> None:
        """Refuse unless the caller proves it holds what the token is bound to (``cnf``); then its quota.

        A DPoP proof's reuse is checked in this process only: prefer ``check_sender_async``.
        """
        checked = self._checked_proof(principal, token, dpop_proof, method, url)
        self._refuse_other_sender(principal, cert_sha256, checked, http=bool(method))
        self._admit(principal)
        authenticated()

    async def check_sender_async(
        self, principal: Principal, *, token: str, cert_sha256: str = "", dpop_proof: str = "",
        method: str = "", url: str = "",
    ) -> None:
        """As ``check_sender``, with a DPoP proof's reuse checked in the store shared by every process."""
        checked = self._checked_proof(principal, token, dpop_proof, method, url)
        self._refuse_other_sender(principal, cert_sha256, checked, http=bool(method))
        self._admit(principal)
        if checked is not None and self.replay_store is not None:
            try:
                first = await self.replay_store.first_use(checked.replay_key, checked.expires_at, self._clock())
            except Exception:  # fail closed: a proof that cannot be recorded could be replayed elsewhere
                raise GatewayError(Reason.DPOP_REPLAY_UNAVAILABLE, retry_after=1.0) from None
            if not first:
                raise GatewayError(Reason.DPOP_PROOF_INVALID, "The DPoP proof was already used")
        authenticated()

    def _checked_proof(
        self, principal: Principal, token: str, proof: str, method: str, url: str
    ) -> CheckedProof | None:
        if not proof or self.sender_mode(principal) == "off":
            return None
        checked = check_proof(proof, method=method, url=self.htu_for(url), access_token=token, now=self._clock(),
                              max_age_s=self._dpop_max_age, leeway_s=self._leeway)
        if not self._replay.first_use(checked.replay_key):   # the cheap check first: same process
            raise GatewayError(Reason.DPOP_PROOF_INVALID, "The DPoP proof was already used")
        return checked

    def _refuse_other_sender(
        self, principal: Principal, cert_sha256: str, checked: CheckedProof | None, *, http: bool
    ) -> None:
        cnf = principal.claims.get("cnf")
        if not http and isinstance(cnf, Mapping) and "jkt" in cnf and self.sender_mode(principal) != "off":
            # DPoP binds a proof to an HTTP method and URL; gRPC has neither (no standard htu for a method).
            raise GatewayError(Reason.SENDER_CONSTRAINT_FAILED, "A DPoP-bound token is not accepted on gRPC: "
                               "use a certificate-bound (mTLS) token on gRPC, or call the REST door")
        evidence = SenderEvidence(cert_sha256, checked.thumbprint if checked else "")
        refusal = sender_refusal(principal.claims.get("cnf"), self.sender_mode(principal), evidence)
        if refusal is not None:
            raise GatewayError(*refusal)

    def _admit(self, principal: Principal) -> None:
        if self.principal_quotas is not None and principal.kind != "consumer":
            self.principal_quotas.take(principal.kind, principal.id, self._clock())


def _check_type(header: Mapping[str, Any]) -> None:
    """An access token is a JWT (``typ`` absent, ``JWT`` or ``at+jwt``) with no nested content (``cty``)."""
    if "cty" in header:
        raise GatewayError(Reason.TOKEN_INVALID, "An access token has no content type (cty)",
                           metadata={"header": "cty"})
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES):
        raise GatewayError(Reason.TOKEN_INVALID, "The token's type (typ) is not an access token",
                           metadata={"header": "typ"})


def _map_pyjwt(exc: Exception) -> Reason:
    for cls, reason in _PYJWT_REASONS:
        if isinstance(exc, cls):
            return reason
    return Reason.TOKEN_INVALID
