"""The citizen's eID sign-in at the page (``[citizen_login]``): four routes over ``CitizenLogin``.

- ``GET /me/auth/login``: to the provider's authorisation endpoint (303), with the sign-in cookie that
  binds the sign-in to this browser (a GET: it is a navigation; the store bounds what it starts);
- ``GET /me/auth/callback``: the provider's answer, honoured only with the sign-in cookie of the browser
  that started it; a session cookie (``_citizen_cookie``, the browser's previous session ended) and back
  to ``/me/`` (303), or back to ``/me/?signin_error=REASON`` when the sign-in is refused (the page says
  why in the reader's language; the refusal is a security event); the sign-in cookie is cleared once the
  sign-in it binds is over (not by a callback with an unknown state, which a forged link can send);
- ``POST /me/auth/logout``: ends the session at the gateway (same-origin and ``x-csrf-token`` required),
  clears the cookie, and gives the provider's ``end_session_endpoint`` URL (RP-initiated logout): as
  ``{"next": URL}`` to a caller that accepts JSON (the page), else as a 303 redirect;
- ``GET /me/auth/session``: who is signed in, and the CSRF token the page sends with each change.

Installed before the page's static mount (``routes_citizen.page_installer``), which would shadow them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from gateway.application.runtime import RestInstaller
from gateway.core.errors import GatewayError, Reason
from gateway.entrypoints._citizen_cookie import CitizenCookie
from gateway.entrypoints._problem import problem_response

__all__ = ["citizen_login_installer"]

_NO_STORE = {"cache-control": "no-store"}
_US = 1_000_000


def _back_to_page(err: GatewayError) -> Response:
    """A refused sign-in: the page, told which reason (a code, never the provider's words)."""
    return RedirectResponse("/me/?" + urlencode({"signin_error": str(err.reason)}), status_code=303,
                            headers=_NO_STORE)  # fmt: skip


def citizen_login_installer(cookie: CitizenCookie) -> RestInstaller:
    login = cookie.login

    async def start(request: Request) -> Response:
        try:
            started = await login.start(request.client.host if request.client else "")
        except GatewayError as err:
            return _back_to_page(err)
        response = RedirectResponse(started.url, status_code=303, headers=_NO_STORE)
        cookie.set_sign_in(response, started.binding)
        return response

    async def callback(request: Request) -> Response:
        q = request.query_params
        try:
            signed = await login.finish(state=q.get("state", ""), code=q.get("code", ""), error=q.get("error", ""),
                                        binding=cookie.sign_in_value(request.cookies),
                                        previous_session=cookie.value(request.cookies))  # fmt: skip
        except GatewayError as err:
            response = _back_to_page(err)
            if err.reason != Reason.SIGN_IN_STATE_INVALID:   # else a forged callback would spoil a real sign-in
                cookie.clear_sign_in(response)
            return response
        response = RedirectResponse("/me/", status_code=303, headers=_NO_STORE)
        cookie.set(response, signed.session_id)
        cookie.clear_sign_in(response)
        return response

    async def logout(request: Request) -> Response:
        try:
            await cookie.session_for_change("POST", request.headers, request.cookies)
        except GatewayError as err:
            refused = problem_response(err)
            if err.reason == Reason.SESSION_INVALID:
                cookie.clear(refused)
            return refused
        next_url = await login.sign_out(cookie.value(request.cookies)) or ""
        if "application/json" in request.headers.get("accept", ""):
            response: Response = JSONResponse({"next": next_url}, headers=_NO_STORE)
        else:
            response = RedirectResponse(next_url or "/me/", status_code=303, headers=_NO_STORE)
        cookie.clear(response)
        return response

    async def session(request: Request) -> Response:
        found = await login.session(cookie.value(request.cookies))
        body: dict[str, Any] = {"configured": True, "signedIn": found is not None}
        if found is not None:
            expires_us = found.created_us + login.policy.absolute_timeout_s * _US
            body |= {"nationalId": found.national_id, "csrfToken": found.csrf_token, "acr": found.acr,
                     "expiresAt": expires_us // _US}  # fmt: skip
        return JSONResponse(body, headers=_NO_STORE)

    def install(app: FastAPI) -> dict[str, Any]:
        for path, route, method in (("/me/auth/login", start, "GET"), ("/me/auth/callback", callback, "GET"),
                                    ("/me/auth/logout", logout, "POST"), ("/me/auth/session", session, "GET")):
            app.add_api_route(path, route, methods=[method], include_in_schema=False)
        return {}

    return install
