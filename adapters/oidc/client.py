"""An OpenID Connect provider reached with Authlib: discovery, code flow with PKCE, ID token checks, logout.

- discovery from ``{issuer}/.well-known/openid-configuration`` (its ``issuer`` must be ours exactly, and
  every endpoint it names https://, or http:// on the loopback as the issuer may be);
- the authorisation request carries ``state``, ``nonce``, an S256 ``code_challenge`` and ``acr_values``;
- the code is redeemed with ``client_secret`` (HTTP Basic) or ``private_key_jwt`` (RFC 7523, a key file);
- the ID token is verified with the provider's JWKS (refetched once for an unknown key id) and its
  ``iss``, ``aud``, ``azp`` (ours when present, required with several audiences), ``exp``, ``iat`` and
  ``nonce`` checked (joserfc, Authlib's JOSE library);
- sign-out goes to ``end_session_endpoint`` with ``id_token_hint`` (RP-initiated logout 1.0).

Every failure is a ``GatewayError`` with a ``SIGN_IN_*`` reason; the provider's own words are never shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.oauth2.auth import ClientAuth  # Authlib ships no type hints: Any (pyproject's mypy override)
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from gateway.core.citizen_sessions import IdTokenCheck
from gateway.core.errors import GatewayError, Reason

__all__ = ["AuthlibOpenIdProvider", "OidcClientSettings"]

_ID_TOKEN_ALGS = ("ES256", "ES384", "RS256", "PS256", "EdDSA")
_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")   # required; end_session_endpoint optional
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _https_or_loopback(url: object) -> bool:
    """An endpoint the gateway may send a browser, a code or a client credential to."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    loopback_http = parts.scheme == "http" and parts.hostname in _LOOPBACK
    return bool(parts.hostname) and (parts.scheme == "https" or loopback_http)


@dataclass(frozen=True, slots=True)
class OidcClientSettings:
    """The relying party as registered at the provider."""

    issuer: str
    client_id: str
    redirect_uri: str
    post_logout_redirect_uri: str
    scopes: tuple[str, ...] = ("openid",)
    acr_values: tuple[str, ...] = ()
    client_secret: str = ""
    private_key_pem: bytes = b""      # private_key_jwt when set
    private_key_alg: str = "ES256"
    leeway_s: int = 60


def _refused(reason: Reason, detail: str = "") -> GatewayError:
    return GatewayError(reason, detail)


class AuthlibOpenIdProvider:
    """``gateway.core.citizen_sessions.OpenIdProvider`` over HTTP (the client is the caller's)."""

    def __init__(self, settings: OidcClientSettings, http: httpx.AsyncClient) -> None:
        self._s = settings
        self._http = http
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers={"accept": "application/json"})
        except httpx.HTTPError:
            raise _refused(Reason.SIGN_IN_PROVIDER_UNAVAILABLE) from None
        if response.status_code != 200:
            raise _refused(Reason.SIGN_IN_PROVIDER_UNAVAILABLE)
        try:
            body = response.json()
        except ValueError:
            raise _refused(Reason.SIGN_IN_PROVIDER_UNAVAILABLE) from None
        if not isinstance(body, dict):
            raise _refused(Reason.SIGN_IN_PROVIDER_UNAVAILABLE)
        return body

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document, read once."""
        if self._metadata is None:
            found = await self._get_json(self._s.issuer.rstrip("/") + "/.well-known/openid-configuration")
            if found.get("issuer") != self._s.issuer:   # OpenID Connect Discovery 1.0 §4.3
                raise _refused(Reason.SIGN_IN_PROVIDER_UNAVAILABLE, "The provider's discovery names another issuer")
            named = [*_ENDPOINTS, *(["end_session_endpoint"] if "end_session_endpoint" in found else [])]
            if not all(_https_or_loopback(found.get(name)) for name in named):
                raise _refused(Reason.SIGN_IN_PROVIDER_UNAVAILABLE, "The provider's discovery names a plain endpoint")
            self._metadata = found
        return self._metadata

    async def _key_set(self, refresh: bool) -> KeySet:
        if self._keys is None or refresh:
            jwks = await self._get_json(str((await self.metadata())["jwks_uri"]))
            try:
                self._keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError):
                raise _refused(Reason.SIGN_IN_PROVIDER_UNAVAILABLE) from None
        return self._keys

    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str) -> str:
        meta = await self.metadata()
        extra: dict[str, str] = {"nonce": nonce, "code_challenge": create_s256_code_challenge(code_verifier),
                                 "code_challenge_method": "S256"}  # fmt: skip
        if self._s.acr_values:
            extra["acr_values"] = " ".join(self._s.acr_values)
        return str(prepare_grant_uri(str(meta["authorization_endpoint"]), self._s.client_id, "code",
                                     redirect_uri=self._s.redirect_uri, scope=" ".join(self._s.scopes),
                                     state=state, **extra))  # fmt: skip

    def _client_auth(self, token_endpoint: str) -> ClientAuth:
        if self._s.private_key_pem:
            signer = PrivateKeyJWT(token_endpoint, alg=self._s.private_key_alg)
            return ClientAuth(self._s.client_id, _private_key(self._s.private_key_pem, self._s.private_key_alg), signer)
        return ClientAuth(self._s.client_id, self._s.client_secret, "client_secret_basic")

    async def _token_response(self, code: str, code_verifier: str) -> dict[str, Any]:
        endpoint = str((await self.metadata())["token_endpoint"])
        body = prepare_token_request("authorization_code", code=code, redirect_uri=self._s.redirect_uri,
                                     code_verifier=code_verifier)  # fmt: skip
        headers = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
        _, headers, body = self._client_auth(endpoint).prepare("POST", endpoint, headers, body)
        try:
            response = await self._http.post(endpoint, content=body, headers=headers)
        except httpx.HTTPError:
            raise _refused(Reason.SIGN_IN_PROVIDER_UNAVAILABLE) from None
        if response.status_code >= 500:
            raise _refused(Reason.SIGN_IN_PROVIDER_UNAVAILABLE)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200 or not isinstance(answer, dict):
            raise _refused(Reason.SIGN_IN_CODE_REFUSED)   # invalid_grant: used, expired or another client's
        return answer

    async def redeem(self, code: str, code_verifier: str, check: IdTokenCheck) -> tuple[Mapping[str, object], str]:
        answer = await self._token_response(code, code_verifier)
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise _refused(Reason.SIGN_IN_TOKEN_INVALID, "The provider returned no ID token")
        return self.verify_id_token(id_token, await self._decoded(id_token), check), id_token

    async def _decoded(self, id_token: str) -> dict[str, Any]:
        for refresh in (False, True):   # a key id not in the cached set: the provider rotated its keys
            try:
                return dict(jwt.decode(id_token, await self._key_set(refresh), algorithms=list(_ID_TOKEN_ALGS)).claims)
            except JoseError as exc:
                if refresh or "key" not in type(exc).__name__.lower():
                    raise _refused(Reason.SIGN_IN_TOKEN_INVALID) from None
        raise _refused(Reason.SIGN_IN_TOKEN_INVALID)   # pragma: no cover (the loop returns or raises)

    def verify_id_token(self, id_token: str, claims: dict[str, Any], check: IdTokenCheck) -> Mapping[str, object]:
        """OpenID Connect Core §3.1.3.7 on signature-checked claims; a refusal names the first failed check."""
        registry = jwt.JWTClaimsRegistry(
            now=check.now_s, leeway=self._s.leeway_s,
            iss={"essential": True, "value": self._s.issuer}, aud={"essential": True, "value": self._s.client_id},
            sub={"essential": True}, exp={"essential": True}, iat={"essential": True},
            nonce={"essential": True, "value": check.nonce},
        )  # fmt: skip
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise _refused(Reason.SIGN_IN_TOKEN_EXPIRED) from None
        except ClaimError as exc:
            raise _refused(_CLAIM_REASONS.get(exc.claim, Reason.SIGN_IN_TOKEN_INVALID)) from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if ("azp" in claims or len(audiences) > 1) and claims.get("azp") != self._s.client_id:
            raise _refused(Reason.SIGN_IN_WRONG_AUDIENCE)   # Core §3.1.3.7 items 4 and 5
        return claims

    async def _end_session_endpoint(self) -> str:
        try:
            endpoint = (await self.metadata()).get("end_session_endpoint")
        except GatewayError:
            return ""
        return endpoint if isinstance(endpoint, str) else ""

    async def ends_sessions(self) -> bool:
        return bool(await self._end_session_endpoint())

    async def logout_url(self, *, id_token_hint: str, state: str) -> str | None:
        endpoint = await self._end_session_endpoint()
        if not endpoint:
            return None
        params = {"client_id": self._s.client_id, "post_logout_redirect_uri": self._s.post_logout_redirect_uri,
                  "state": state} | ({"id_token_hint": id_token_hint} if id_token_hint else {})  # fmt: skip
        return str(httpx.URL(endpoint, params=params))


def _private_key(pem: bytes, alg: str) -> ECKey | RSAKey | OKPKey:
    """The client's ``private_key_jwt`` key, of the type its algorithm needs (ES*, RS*/PS*, EdDSA)."""
    kind = ECKey if alg.startswith("ES") else OKPKey if alg == "EdDSA" else RSAKey
    return kind.import_key(pem)


_CLAIM_REASONS = {"aud": Reason.SIGN_IN_WRONG_AUDIENCE, "azp": Reason.SIGN_IN_WRONG_AUDIENCE,
                  "nonce": Reason.SIGN_IN_NONCE_MISMATCH, "exp": Reason.SIGN_IN_TOKEN_EXPIRED}  # fmt: skip

