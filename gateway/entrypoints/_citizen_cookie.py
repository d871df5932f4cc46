"""The citizen's session cookie at the REST door: its attributes, and the citizen it authenticates.

The cookie is an alternative to a bearer token on the citizen API (``/v1/me/...``), used by the page
after an eID sign-in (``routes_citizen_login``). A call with an ``authorization`` header is a token
call whatever cookie it carries (apps keep their tokens). A state-changing call (any method but GET,
HEAD, OPTIONS) authenticated by the cookie must come from the gateway's own origin (``Sec-Fetch-Site:
same-origin`` when the browser sends it, ``Origin`` equal to ``public_url`` when it sends one, at
least one of them; else ``CROSS_ORIGIN_REFUSED``) and carry the session's ``x-csrf-token``
(``CSRF_TOKEN_INVALID``). Both refusals are security events.

Cookie: ``__Host-passerelle-session`` (Secure, so the ``__Host-`` prefix: no Domain, Path=/) or, on a
plain-HTTP loopback ``public_url`` (tests, demo), ``passerelle-session`` without Secure; HttpOnly,
SameSite=Lax, no Max-Age (it ends with the browser; the server-side session has its own timeouts).

Sign-in cookie: ``__Host-passerelle-sign-in`` (or ``passerelle-sign-in`` on loopback HTTP), same
attributes, Max-Age the sign-in's timeout: set by ``/me/auth/login``, it holds the secret that binds
the sign-in to this browser (RFC 9700 §4.7); the callback needs it and clears it. SameSite=Lax still
sends it on the provider's top-level redirect back to the callback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.responses import Response

from gateway.application.citizen_login import CitizenLogin
from gateway.application.runtime import Gateway
from gateway.core.auth import Principal
from gateway.core.citizen_sessions import CitizenSession
from gateway.core.errors import GatewayError, Reason

__all__ = ["SAFE_METHODS", "CitizenCookie", "citizen_cookie"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SECURE_NAME = "__Host-passerelle-session"
_PLAIN_NAME = "passerelle-session"
_SECURE_SIGN_IN = "__Host-passerelle-sign-in"
_PLAIN_SIGN_IN = "passerelle-sign-in"


@dataclass(frozen=True, slots=True)
class CitizenCookie:
    login: CitizenLogin
    origin: str   # the gateway's public origin, e.g. https://passerelle.example.lu
    secure: bool
    record: Callable[[Reason, str], None]   # a front-door security event (reason, protocol)

    @property
    def name(self) -> str:
        return _SECURE_NAME if self.secure else _PLAIN_NAME

    def value(self, cookies: Mapping[str, str]) -> str:
        return cookies.get(self.name, "")

    def set(self, response: Response, session_id: str) -> None:
        response.set_cookie(self.name, session_id, path="/", secure=self.secure, httponly=True, samesite="lax")

    def clear(self, response: Response) -> None:
        response.delete_cookie(self.name, path="/", secure=self.secure, httponly=True, samesite="lax")

    @property
    def sign_in_name(self) -> str:
        return _SECURE_SIGN_IN if self.secure else _PLAIN_SIGN_IN

    def sign_in_value(self, cookies: Mapping[str, str]) -> str:
        return cookies.get(self.sign_in_name, "")

    def set_sign_in(self, response: Response, binding: str) -> None:
        response.set_cookie(self.sign_in_name, binding, max_age=self.login.policy.pending_timeout_s, path="/",
                            secure=self.secure, httponly=True, samesite="lax")  # fmt: skip

    def clear_sign_in(self, response: Response) -> None:
        response.delete_cookie(self.sign_in_name, path="/", secure=self.secure, httponly=True, samesite="lax")

    def check_same_origin(self, headers: Mapping[str, str]) -> None:
        """A state-changing request from the page itself, not from another site (recorded when refused)."""
        site, origin = headers.get("sec-fetch-site"), headers.get("origin")
        if (site is not None and site != "same-origin") or (origin is not None and origin != self.origin) \
                or (site is None and origin is None):  # fmt: skip
            self.record(Reason.CROSS_ORIGIN_REFUSED, "rest")
            raise GatewayError(Reason.CROSS_ORIGIN_REFUSED)

    async def session_for_change(self, method: str, headers: Mapping[str, str],
                                 cookies: Mapping[str, str]) -> tuple[Principal, CitizenSession]:  # fmt: skip
        """The signed-in citizen; a state-changing ``method`` also passes the origin and CSRF checks."""
        if method.upper() not in SAFE_METHODS:
            self.check_same_origin(headers)
        principal, session = await self.login.principal(self.value(cookies))
        if method.upper() not in SAFE_METHODS:
            self.login.check_csrf(session, headers.get("x-csrf-token", ""))
        return principal, session

    async def principal(self, method: str, headers: Mapping[str, str], cookies: Mapping[str, str]) -> Principal | None:
        """The citizen a cookie authenticates, or ``None`` when the call is a token call (or has no cookie)."""
        if "authorization" in headers or not self.value(cookies):
            return None
        return (await self.session_for_change(method, headers, cookies))[0]


def citizen_cookie(gateway: Gateway) -> CitizenCookie | None:
    """The cookie's settings from ``[citizen_login]``; ``None`` when citizens do not sign in at the gateway."""
    section, login = gateway.config.citizen_login, gateway.citizen_login
    if section is None or login is None:
        return None
    return CitizenCookie(login, section.public_url, section.secure_cookie, gateway.pipeline.record_security_event)
