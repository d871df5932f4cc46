"""Citizens sign in at the page with their national eID (OpenID Connect), and sign out.

Use cases over three ports (``gateway.core.citizen_sessions``): the identity provider, pending
sign-ins and sessions. The front door only moves their results into redirects and a cookie.

- ``start``: a fresh ``state``, ``nonce``, PKCE verifier and browser binding secret (256 bits each) kept
  server-side under the state's hash (the binding secret only as its hash); the browser goes to the
  provider's authorisation URL holding the binding secret in a short-lived cookie. The store keeps at
  most ``pending_per_client`` sign-ins per client address and ``pending_total`` in all (oldest first).
- ``finish``: the state is taken (so it works once and only within ``pending_timeout_s``) and must come
  with the binding secret of the browser that started it (RFC 9700 §4.7: no login CSRF, a callback URL
  opened in another browser signs nobody in), the code redeemed, the ID token checked (adapter:
  signature, iss, aud, azp, exp, nonce; here: ``acr`` at least the level required, and a subject claim
  that is a valid national id), then a session is created: its id (256 bits) goes to the browser, its
  hash to the store, with a CSRF token of its own. The session the browser had before ends, and
  expired sessions are purged.
- ``purge``: expired sessions (idle or too old) and sign-ins deleted; also run periodically.
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

__all__ = ["SESSION_ISSUER", "SIGNED_IN", "SIGNED_OUT", "CitizenLogin", "SignInPolicy", "SignInStart", "SignedIn",
           "csrf_ok"]  # fmt: skip

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
    pending_per_client: int = 20      # sign-ins in progress per client address (a NAT's users share one)
    pending_total: int = 10_000       # and in all: unauthenticated GETs start them


@dataclass(frozen=True, slots=True)
class SignInStart:
    """A started sign-in: where the browser goes, and the secret its sign-in cookie holds."""

    url: str
    binding: str


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

    async def start(self, client: str = "") -> SignInStart:
        """A new sign-in by ``client`` (its address): the provider's authorisation URL and the binding secret."""
        state, nonce, verifier, binding = _secret(), _secret(), _secret() + _secret(), _secret()  # verifier: 43..128
        now, p = self._now(), self._policy
        pending = PendingSignIn(id_hash(state), nonce, verifier, now, id_hash(binding), id_hash(client))
        await self._pending.put(pending, not_before_us=now - p.pending_timeout_s * _US,
                                max_per_client=p.pending_per_client, max_total=p.pending_total)  # fmt: skip
        url = await self._provider.authorization_url(state=state, nonce=nonce, code_verifier=verifier)
        return SignInStart(url, binding)

    async def finish(self, *, state: str, code: str, error: str = "", binding: str = "",
                     previous_session: str = "") -> SignedIn:  # fmt: skip
        """The callback, with the browser's binding secret and its session cookie (ended on success).

        Every refusal is recorded as a security event and re-raised."""
        try:
            signed = await self._finish(state, code, error, binding)
        except GatewayError as exc:
            self._events.record(exc.reason, _PROTOCOL, "sign-in refused")
            raise
        if previous_session and await self._sessions.get(id_hash(previous_session)) is not None:
            await self._sessions.end(id_hash(previous_session))   # signing in again replaces the session
            self._events.record(SIGNED_OUT, _PROTOCOL, "replaced by a new sign-in")
        return signed

    async def _finish(self, state: str, code: str, error: str, binding: str) -> SignedIn:
        now = self._now()
        oldest = now - self._policy.pending_timeout_s * _US
        pending = await self._pending.take(id_hash(state), oldest) if state else None
        # Taken even when the binding is wrong: a callback URL seen by another browser is spent.
        if pending is None or not binding or not hmac.compare_digest(pending.binding_hash, id_hash(binding)):
            raise GatewayError(Reason.SIGN_IN_STATE_INVALID)
        if error or not code:
            raise GatewayError(Reason.SIGN_IN_PROVIDER_ERROR)
        check = IdTokenCheck(nonce=pending.nonce, acr_values=self._policy.acr_values, now_s=now // _US)
        claims, id_token = await self._provider.redeem(code, pending.code_verifier, check)
        national_id, acr = self._checked(claims)
        hint = id_token if await self._provider.ends_sessions() else ""   # kept only as the logout hint
        session_id = _secret()
        session = CitizenSession(id_hash(session_id), national_id, _secret(), acr, hint, now, now)
        await self.purge()
        await self._sessions.create(session)
        self._events.record(SIGNED_IN, _PROTOCOL, f"acr={acr}")
        return SignedIn(session_id, session)

    async def purge(self) -> int:
        """Delete expired sessions (idle or past their maximum) and sign-ins; how many sessions went."""
        now, p = self._now(), self._policy
        await self._pending.prune(now - p.pending_timeout_s * _US)
        return await self._sessions.purge(seen_before_us=now - p.idle_timeout_s * _US,
                                          created_before_us=now - p.absolute_timeout_s * _US)  # fmt: skip

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
