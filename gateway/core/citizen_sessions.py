"""A citizen's sign-in at the page: the plain data and the ports the use cases need.

The gateway is an OpenID Connect relying party (``gateway.application.citizen_login``): a sign-in
starts with a ``PendingSignIn`` (state, nonce and PKCE verifier kept server-side, single use) and
ends with a ``CitizenSession`` held server-side. The browser only holds the session id; the store
holds its SHA-256, so a copy of the table opens no session. Time is epoch microseconds, passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "EIDAS_LEVELS",
    "CitizenSession",
    "IdTokenCheck",
    "OpenIdProvider",
    "PendingSignIn",
    "PendingSignInStore",
    "SessionStore",
    "acr_satisfies",
    "id_hash",
]

#: eIDAS levels of assurance, lowest first: a higher level satisfies a lower requirement.
EIDAS_LEVELS = (
    "http://eidas.europa.eu/LoA/low",
    "http://eidas.europa.eu/LoA/substantial",
    "http://eidas.europa.eu/LoA/high",
)


def id_hash(secret: str) -> str:
    """What a store keeps of a session id or a sign-in state: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def acr_satisfies(acr: str, required: Sequence[str]) -> bool:
    """True when ``acr`` is one of ``required`` or an eIDAS level at least as high as one of them.

    No requirement accepts any sign-in; an unknown value satisfies only itself."""
    if not required or acr in required:
        return True
    if acr not in EIDAS_LEVELS:
        return False
    rank = EIDAS_LEVELS.index(acr)
    return any(r in EIDAS_LEVELS and EIDAS_LEVELS.index(r) <= rank for r in required)


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """Between ``/me/auth/login`` and ``/me/auth/callback``: kept under the hash of ``state``."""

    state_hash: str
    nonce: str
    code_verifier: str
    created_us: int


@dataclass(frozen=True, slots=True)
class CitizenSession:
    """A signed-in citizen at the page. ``id_token`` is kept only as the logout hint."""

    id_hash: str
    national_id: str
    csrf_token: str
    acr: str
    id_token: str
    created_us: int
    last_seen_us: int


@dataclass(frozen=True, slots=True)
class IdTokenCheck:
    """What the ID token must say: the sign-in's nonce and the level of assurance required."""

    nonce: str
    acr_values: tuple[str, ...]
    now_s: int


class PendingSignInStore(Protocol):
    """Sign-ins in progress; ``take`` removes what it returns, so a state works once."""

    async def put(self, pending: PendingSignIn) -> None: ...

    async def take(self, state_hash: str, not_before_us: int) -> PendingSignIn | None: ...


class SessionStore(Protocol):
    """Server-side sessions; a row lives until sign-out or until a timeout is noticed."""

    async def create(self, session: CitizenSession) -> None: ...

    async def get(self, session_hash: str) -> CitizenSession | None: ...

    async def touch(self, session_hash: str, now_us: int) -> None: ...

    async def end(self, session_hash: str) -> None: ...


class OpenIdProvider(Protocol):
    """The identity provider as the use cases see it; refusals are ``GatewayError(SIGN_IN_*)``."""

    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str) -> str: ...

    async def redeem(self, code: str, code_verifier: str, check: IdTokenCheck) -> tuple[Mapping[str, object], str]:
        """The ID token's verified claims and the token itself, for ``code``."""
        ...

    async def logout_url(self, *, id_token_hint: str, state: str) -> str | None: ...
