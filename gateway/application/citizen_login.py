"""Citizens sign in at the page with their national eID (OpenID Connect), and sign out.

Use cases over three ports (``gateway.core.citizen_sessions``): the identity provider, pending
sign-ins and sessions. The front door only moves their results into redirects and a cookie.

- ``start``: a fresh ``state``, ``nonce`` and PKCE verifier (256 bits each) kept server-side under the
  state's hash; the browser goes to the provider's authorisation URL.
- ``finish``: the state is taken (so it works once and only within ``pending_timeout_s``), the code
  redeemed, the ID token checked (adapter: signature, iss, aud, exp, nonce; here: ``acr`` at least the
  level required, and a subject claim that is a valid national id), then a session is created: its id
  (256 bits) goes to the browser, its hash to the store, with a CSRF token of its own.
- ``session``: the session behind a cookie, or ``None`` once it ended, idled or outlived its maximum.
- ``sign_out``: the session ends at the gateway; the provider's logout URL is returned when it has one.
- ``principal``: the citizen behind a session cookie, as the citizen API sees a bearer token's subject
  (``SESSION_INVALID`` otherwise); ``check_csrf``: a state-changing request's anti-forgery token.

Each sign-in, sign-out and failed sign-in is a security event.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.core.auth import Principal
from gateway.core.citizen_sessions import (
    CitizenSession,
    IdTokenCheck,
    OpenIdProvider,
    PendingSignIn,
    PendingSignInStore,
    SessionStore,
    acr_satisfies,
    id_hash,
)
from gateway.core.errors import GatewayError, Reason
from gateway.core.identifiers import national_id_problem
from gateway.core.ports import SecurityEvents
from gateway.core.quotas import PrincipalQuotas

__all__ = ["SESSION_ISSUER", "SIGNED_IN", "SIGNED_OUT", "CitizenLogin", "SignInPolicy", "SignedIn", "csrf_ok"]

SIGNED_IN = "CITIZEN_SIGNED_IN"     # security events that are not refusals
SIGNED_OUT = "CITIZEN_SIGNED_OUT"
SESSION_ISSUER = "passerelle:citizen-session"   # a session principal's issuer: not a token's
_PROTOCOL = "rest"
_US = 1_000_000
_TOUCH_EVERY_US = 30 * _US          # an idle clock with 30 s resolution spares a write per request


@dataclass(frozen=True, slots=True)
class SignInPolicy:
    subject_claim: str = "sub"
    acr_values: tuple[str, ...] = ()
    idle_timeout_s: int = 15 * 60
    absolute_timeout_s: int = 8 * 3600
    pending_timeout_s: int = 10 * 60


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A finished sign-in: the secret session id for the cookie, and the session."""

    session_id: str
    session: CitizenSession


def _secret() -> str:
    return secrets.token_urlsafe(32)   # 256 bits


class CitizenLogin:
    def __init__(
        self,
        provider: OpenIdProvider,
        pending: PendingSignInStore,
        sessions: SessionStore,
        events: SecurityEvents,
        policy: SignInPolicy,
        clock_us: Callable[[], int],
        *,
        quotas: PrincipalQuotas | None = None,
    ) -> None:
        self._provider, self._pending, self._sessions = provider, pending, sessions
        self._events, self._policy, self._now = events, policy, clock_us
        self._quotas = quotas   # the citizens' own quotas, as for their bearer tokens

    @property
    def policy(self) -> SignInPolicy:
        return self._policy

    async def start(self) -> str:
        """The provider's authorisation URL for a new sign-in."""
        state, nonce, verifier = _secret(), _secret(), _secret() + _secret()   # verifier: 43..128 chars
        await self._pending.put(PendingSignIn(id_hash(state), nonce, verifier, self._now()))
        return await self._provider.authorization_url(state=state, nonce=nonce, code_verifier=verifier)

    async def finish(self, *, state: str, code: str, error: str = "") -> SignedIn:
        """The callback; every refusal is recorded as a security event and re-raised."""
        try:
            return await self._finish(state, code, error)
        except GatewayError as exc:
            self._events.record(exc.reason, _PROTOCOL, "sign-in refused")
            raise

    async def _finish(self, state: str, code: str, error: str) -> SignedIn:
        now = self._now()
        oldest = now - self._policy.pending_timeout_s * _US
        pending = await self._pending.take(id_hash(state), oldest) if state else None
        if pending is None:
            raise GatewayError(Reason.SIGN_IN_STATE_INVALID)
        if error or not code:
            raise GatewayError(Reason.SIGN_IN_PROVIDER_ERROR)
        check = IdTokenCheck(nonce=pending.nonce, acr_values=self._policy.acr_values, now_s=now // _US)
        claims, id_token = await self._provider.redeem(code, pending.code_verifier, check)
        national_id, acr = self._checked(claims)
        session_id = _secret()
        session = CitizenSession(id_hash(session_id), national_id, _secret(), acr, id_token, now, now)
        await self._sessions.create(session)
        self._events.record(SIGNED_IN, _PROTOCOL, f"acr={acr}")
        return SignedIn(session_id, session)

    def _checked(self, claims: Mapping[str, object]) -> tuple[str, str]:
        acr = claims.get("acr")
        acr_text = acr if isinstance(acr, str) else ""
        if not acr_satisfies(acr_text, self._policy.acr_values):
            raise GatewayError(Reason.SIGN_IN_ASSURANCE_TOO_LOW)
        subject = claims.get(self._policy.subject_claim)
        if not isinstance(subject, str) or national_id_problem(subject) is not None:
            raise GatewayError(Reason.SIGN_IN_SUBJECT_INVALID)
        return subject, acr_text

    async def session(self, session_id: str) -> CitizenSession | None:
        """The live session for a cookie's value; an idle or too old one is ended here."""
        if not session_id:
            return None
        key = id_hash(session_id)
        found = await self._sessions.get(key)
        if found is None:
            return None
        now = self._now()
        if (now - found.created_us > self._policy.absolute_timeout_s * _US
                or now - found.last_seen_us > self._policy.idle_timeout_s * _US):  # fmt: skip
            await self._sessions.end(key)
            return None
        if now - found.last_seen_us > _TOUCH_EVERY_US:
            await self._sessions.touch(key, now)
        return found

    async def sign_out(self, session_id: str) -> str | None:
        """End the session; the provider's logout URL (RP-initiated logout) when there is one to visit."""
        found = await self._sessions.get(id_hash(session_id)) if session_id else None
        if found is None:
            return None
        await self._sessions.end(found.id_hash)
        self._events.record(SIGNED_OUT, _PROTOCOL, "")
        return await self._provider.logout_url(id_token_hint=found.id_token, state=_secret())


    async def principal(self, session_id: str) -> tuple[Principal, CitizenSession]:
        """The citizen behind a session cookie (kind ``citizen``, id the national id), and the session.

        No live session is ``SESSION_INVALID``, recorded; the citizen's quota is charged as for a token."""
        found = await self.session(session_id)
        if found is None:
            self._events.record(Reason.SESSION_INVALID, _PROTOCOL, "")
            raise GatewayError(Reason.SESSION_INVALID)
        now = self._now()
        if self._quotas is not None:
            self._quotas.take("citizen", found.national_id, now / _US)
        expires = (found.created_us + self._policy.absolute_timeout_s * _US) / _US
        principal = Principal(kind="citizen", id=found.national_id, issuer=SESSION_ISSUER, jti="",
                              expires_at=expires, scopes=frozenset({"citizen"}), claims={"acr": found.acr})  # fmt: skip
        return principal, found

    def check_csrf(self, session: CitizenSession, presented: str) -> None:
        """A state-changing request carries the session's anti-forgery token, or is refused and recorded."""
        if not csrf_ok(session, presented):
            self._events.record(Reason.CSRF_TOKEN_INVALID, _PROTOCOL, "")
            raise GatewayError(Reason.CSRF_TOKEN_INVALID)


def csrf_ok(session: CitizenSession, presented: str) -> bool:
    """The page's anti-forgery header matches the session's token (compared in constant time)."""
    return bool(presented) and hmac.compare_digest(session.csrf_token.encode(), presented.encode())
