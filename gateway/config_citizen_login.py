"""``[citizen_login]``: the identity provider the citizen page signs in with (OpenID Connect).

Absent: the page offers no eID sign-in (a bearer token, or the demo sign-in in demo mode).
Present: ``/me/auth/login`` sends the browser to ``issuer``'s authorisation endpoint; the provider
sends it back to ``{public_url}/me/auth/callback``; the session cookie lives at ``public_url``.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["CitizenLoginSection", "is_loopback_http"]

_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def is_loopback_http(url: str) -> bool:
    """``http://`` on this machine only (tests and the demo): the cookie cannot be Secure there."""
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.netloc.rsplit(":", 1)[0] in _LOOPBACK


def _https_or_loopback(url: str) -> str:
    if not (url.startswith("https://") or is_loopback_http(url)):
        raise ValueError("must be https:// (plain http only on 127.0.0.1 or localhost)")
    return url


class CitizenLoginSection(BaseModel):
    """The relying party registered at the provider, and the citizen sessions it opens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Discovery at {issuer}/.well-known/openid-configuration (one slash); kept exactly as written, a trailing
    # slash included: the discovery's issuer and the ID token's iss must equal it character for character.
    issuer: str
    client_id: str = Field(min_length=1)
    client_secret: str = ""  # client_secret_basic, or
    private_key_file: str = ""  # private_key_jwt (RFC 7523): a PEM private key, its public key at the provider
    private_key_alg: Literal["ES256", "ES384", "RS256", "PS256", "EdDSA"] = "ES256"
    # The gateway as the browser reaches it (an origin, no path): the redirect URI is {public_url}/me/auth/callback.
    public_url: str
    subject_claim: str = Field(default="sub", min_length=1)  # the ID token claim holding the national id
    acr_values: list[str] = []  # levels of assurance accepted (eIDAS: a higher level satisfies a lower one)
    scopes: list[str] = ["openid"]
    session_idle_timeout_s: int = Field(default=15 * 60, ge=60, le=86_400)
    session_absolute_timeout_s: int = Field(default=8 * 3600, ge=60, le=7 * 86_400)
    sign_in_timeout_s: int = Field(default=10 * 60, ge=30, le=3600)  # from /me/auth/login to the callback
    # Where sessions are kept: "" follows [gateway] consents (sessions.db beside its file, or its PostgreSQL
    # database), "memory" (one process; tests), "sqlite:PATH" or a postgresql:// DSN.
    sessions: str = ""

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        return _https_or_loopback(v)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.path.strip("/") or parts.query or parts.fragment or not parts.netloc:
            raise ValueError("must be an origin such as https://passerelle.example.lu (no path: the cookie is Path=/)")
        return _https_or_loopback(v).rstrip("/")

    @field_validator("scopes")
    @classmethod
    def _openid(cls, v: list[str]) -> list[str]:
        if "openid" not in v:
            raise ValueError("must include 'openid'")
        return v

    @model_validator(mode="after")
    def _one_client_authentication(self) -> CitizenLoginSection:
        if bool(self.client_secret) == bool(self.private_key_file):
            raise ValueError("give exactly one of client_secret or private_key_file (private_key_jwt)")
        if self.session_absolute_timeout_s < self.session_idle_timeout_s:
            raise ValueError("session_absolute_timeout_s must be at least session_idle_timeout_s")
        return self

    @property
    def secure_cookie(self) -> bool:
        return not is_loopback_http(self.public_url)
