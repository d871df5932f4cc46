"""A citizen's sign-in at the page: the plain data and the ports the use cases need.

The gateway is an OpenID Connect relying party (``gateway.application.citizen_login``): a sign-in
starts with a ``PendingSignIn`` (state, nonce and PKCE verifier kept server-side, single use, bound to
the browser that started it by a secret in a short-lived cookie, RFC 9700 §4.7) and ends with a
``CitizenSession`` held server-side. The browser only holds the session id (and the sign-in's secret);
the store holds their SHA-256, so a copy of the table opens no session and finishes no sign-in. Stores
delete what has expired (``prune``, ``purge``) and bound the sign-ins in progress (``put``).
Time is epoch microseconds, passed in.
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
    """Between ``/me/auth/login`` and ``/me/auth/callback``: kept under the hash of ``state``.

    ``binding_hash``: the hash of the secret in the browser's sign-in cookie (the callback must present
    it); ``client_hash``: the hash of the client address that started it (a cap per address)."""

    state_hash: str
    nonce: str
    code_verifier: str
    created_us: int
    binding_hash: str
    client_hash: str


@dataclass(frozen=True, slots=True)
class CitizenSession:
    """A signed-in citizen at the page.

    ``id_token`` is the ``id_token_hint`` of RP-initiated logout (the provider ends its own session
    without asking the citizen again): kept only when the provider has an ``end_session_endpoint``,
    else empty; it says no more than the row's other columns and goes when the session goes."""

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
    """Sign-ins in progress; ``take`` removes what it returns, so a state works once.

    ``put`` first deletes those older than ``not_before_us``, then keeps at most ``max_per_client``
    of the new one's client and ``max_total`` in all, the oldest going first."""

    async def put(self, pending: PendingSignIn, *, not_before_us: int, max_per_client: int,
                  max_total: int) -> None: ...  # fmt: skip

    async def take(self, state_hash: str, not_before_us: int) -> PendingSignIn | None: ...

    async def prune(self, not_before_us: int) -> int:
        """Delete the sign-ins started before ``not_before_us``; how many went."""
        ...


class SessionStore(Protocol):
    """Server-side sessions; a row lives until sign-out, or until a timeout is noticed or purged."""

    async def create(self, session: CitizenSession) -> None: ...

    async def get(self, session_hash: str) -> CitizenSession | None: ...

    async def touch(self, session_hash: str, now_us: int) -> None: ...

    async def end(self, session_hash: str) -> None: ...

    async def purge(self, *, seen_before_us: int, created_before_us: int) -> int:
        """Delete the sessions idle since before ``seen_before_us`` or created before ``created_before_us``."""
        ...


class OpenIdProvider(Protocol):
    """The identity provider as the use cases see it; refusals are ``GatewayError(SIGN_IN_*)``."""

    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str) -> str: ...

    async def redeem(self, code: str, code_verifier: str, check: IdTokenCheck) -> tuple[Mapping[str, object], str]:
        """The ID token's verified claims and the token itself, for ``code``."""
        ...

    async def ends_sessions(self) -> bool:
        """The provider has an ``end_session_endpoint`` (so the ID token is worth keeping as a hint)."""
        ...

    async def logout_url(self, *, id_token_hint: str, state: str) -> str | None: ...
