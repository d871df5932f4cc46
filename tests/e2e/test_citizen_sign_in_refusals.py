"""Refused eID sign-ins and forged requests, through a running gateway's /me/auth/ routes and citizen API.

Each refusal is checked twice: the reason the browser is sent back with (``/me/?signin_error=CODE``,
or the problem's ``reason``), and the security event counted at ``/metrics``. The real provider
(npm oidc-provider) gives wrong state, replayed code, too-low acr and a subject that is not a national
id; a rogue provider (``tests.rogue_oidc_provider``) signs ID tokens for another client, expired, or
with another nonce. Skipped, with the reason, without node or ``npm ci --prefix tests/browser``;
with ``CI=true`` it fails.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gateway.demo.data import generate
from gateway.demo.setup import demo_token
from tests.citizen_login_stack import (
    CLIENT_ID,
    CLIENT_SECRET,
    LoginStack,
    free_port,
    gateway_with_login,
    security_events,
    session_cookie,
)
from tests.gateway_process import PERSONS, SEED
from tests.oidc_provider import ACR_LOW, ACR_SUBSTANTIAL, missing, oidc_provider, sign_in_with_form
from tests.rogue_oidc_provider import RogueProvider, rogue_provider

NID = generate(SEED, persons=PERSONS).persons[3].national_id


def _required() -> None:
    reason = missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the OpenID Provider tests are mandatory: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoginStack]:
    """A gateway signing in with the real provider (national id in the ``national_id`` claim)."""
    _required()
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    clients = [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [f"{public}/me/auth/callback"],
                "post_logout_redirect_uris": [f"{public}/me/"]}]  # fmt: skip
    accounts = {"citizen": {"national_id": NID, "acr": ACR_SUBSTANTIAL}, "weak": {"national_id": NID, "acr": ACR_LOW},
                "stranger": {"national_id": "1234"}}  # fmt: skip
    tmp = tmp_path_factory.mktemp("signin-real")
    with oidc_provider(clients, accounts, tmp / "provider.log") as op, \
            gateway_with_login(tmp, op.issuer, port, acr=ACR_SUBSTANTIAL, subject_claim="national_id") as stack:
        yield stack


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoginStack, RogueProvider]]:
    """A gateway signing in with a provider that signs spoiled ID tokens."""
    with rogue_provider(CLIENT_ID, NID, ACR_SUBSTANTIAL) as op, \
            gateway_with_login(tmp_path_factory.mktemp("signin-rogue"), op.issuer, free_port(),
                               acr=ACR_SUBSTANTIAL) as stack:  # fmt: skip
        yield stack, op


def _client(stack: LoginStack) -> httpx.Client:
    return httpx.Client(base_url=stack.public_url, timeout=15, follow_redirects=False)


def _sign_in(stack: LoginStack, login: str) -> tuple[httpx.Response, str]:
    """The real provider's form filled in as ``login``: the gateway's answer to the callback, and its URL."""
    with _client(stack) as client:
        start = client.get("/me/auth/login")
        assert start.status_code == 303, start.text
        back = sign_in_with_form(start.headers["location"], login, stack.callback)
        return client.get(back), back


def _refusal(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["location"])
    assert location.path == "/me/"
    return parse_qs(location.query).get("signin_error", [""])[0]


def _counted(stack: LoginStack, reason: str, before: dict[str, float]) -> bool:
    with _client(stack) as client:
        return security_events(client).get(reason, 0.0) > before.get(reason, 0.0)


def _events(stack: LoginStack) -> dict[str, float]:
    with _client(stack) as client:
        return security_events(client)


def test_a_citizen_signs_in_and_the_cookie_opens_the_citizen_api(real: LoginStack) -> None:
    answer, _ = _sign_in(real, "citizen")
    assert answer.status_code == 303 and answer.headers["location"] == "/me/"
    cookie_header = next(v for v in answer.headers.get_list("set-cookie") if v.startswith("passerelle-session="))
    assert "HttpOnly" in cookie_header and "SameSite=lax" in cookie_header and "Path=/" in cookie_header
    session = session_cookie(answer)
    with _client(real) as client:
        who = client.get("/me/auth/session", headers={"cookie": f"passerelle-session={session}"}).json()
        assert who["signedIn"] and who["nationalId"] == NID and who["csrfToken"]
        mine = client.get("/v1/me/accesses", headers={"cookie": f"passerelle-session={session}"})
        assert mine.status_code == 200, mine.text
        assert client.get("/v1/me/accesses").status_code == 401   # no cookie, no token


def test_a_wrong_state_is_refused_and_recorded(real: LoginStack) -> None:
    before = _events(real)
    with _client(real) as client:
        answer = client.get("/me/auth/callback", params={"state": "not-a-state-we-issued", "code": "x"})
    assert _refusal(answer) == "SIGN_IN_STATE_INVALID"
    assert _counted(real, "SIGN_IN_STATE_INVALID", before)


def test_a_replayed_callback_and_a_replayed_code_are_refused_and_recorded(real: LoginStack) -> None:
    first, back = _sign_in(real, "citizen")
    assert session_cookie(first)
    before = _events(real)
    with _client(real) as client:
        assert _refusal(client.get(back)) == "SIGN_IN_STATE_INVALID"   # the same callback again: state used
        fresh = parse_qs(urlsplit(client.get("/me/auth/login").headers["location"]).query)["state"][0]
        code = parse_qs(urlsplit(back).query)["code"][0]
        replayed = client.get("/me/auth/callback", params={"state": fresh, "code": code})
    assert _refusal(replayed) == "SIGN_IN_CODE_REFUSED"
    assert _counted(real, "SIGN_IN_CODE_REFUSED", before)


def test_a_level_of_assurance_below_the_requirement_is_refused_and_recorded(real: LoginStack) -> None:
    before = _events(real)
    answer, _ = _sign_in(real, "weak")
    assert _refusal(answer) == "SIGN_IN_ASSURANCE_TOO_LOW" and not session_cookie(answer)
    assert _counted(real, "SIGN_IN_ASSURANCE_TOO_LOW", before)


def test_a_subject_that_is_not_a_national_id_is_refused_and_recorded(real: LoginStack) -> None:
    before = _events(real)
    answer, _ = _sign_in(real, "stranger")
    assert _refusal(answer) == "SIGN_IN_SUBJECT_INVALID" and not session_cookie(answer)
    assert _counted(real, "SIGN_IN_SUBJECT_INVALID", before)


@pytest.mark.parametrize(("mode", "reason"), [("foreign-aud", "SIGN_IN_WRONG_AUDIENCE"),
                                              ("expired", "SIGN_IN_TOKEN_EXPIRED"),
                                              ("wrong-nonce", "SIGN_IN_NONCE_MISMATCH")])  # fmt: skip
def test_a_spoiled_id_token_is_refused_and_recorded(rogue: tuple[LoginStack, RogueProvider], mode: str,
                                                    reason: str) -> None:  # fmt: skip
    stack, op = rogue
    op.mode = mode
    before = _events(stack)
    with _client(stack) as client:
        to_provider = client.get("/me/auth/login").headers["location"]
        back = httpx.get(to_provider, follow_redirects=False).headers["location"]
        answer = client.get(back)
    assert _refusal(answer) == reason and not session_cookie(answer)
    assert _counted(stack, reason, before)


def test_the_rogue_provider_signs_in_when_its_token_is_good(rogue: tuple[LoginStack, RogueProvider]) -> None:
    """The control: the three refusals above come from the spoiled claim, not the set-up."""
    stack, op = rogue
    op.mode = "good"
    with _client(stack) as client:
        back = httpx.get(client.get("/me/auth/login").headers["location"], follow_redirects=False).headers["location"]
        assert session_cookie(client.get(back))


def _consent(stack: LoginStack) -> str:
    token = demo_token(stack.data_dir, issuer_id="demo-citizens", subject=NID, scope="citizen")
    with _client(stack) as client:
        r = client.post("/v1/me/consents", headers={"authorization": f"Bearer {token}"},
                        json={"consumer": "cedies", "purpose": "student-aid"})  # fmt: skip
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_a_cross_site_change_without_the_csrf_token_is_refused_and_recorded(real: LoginStack) -> None:
    answer, _ = _sign_in(real, "citizen")
    jar = {"cookie": f"passerelle-session={session_cookie(answer)}"}
    consent = _consent(real)
    path = f"/v1/me/consents/{consent}"
    before = _events(real)
    with _client(real) as client:
        csrf = client.get("/me/auth/session", headers=jar).json()["csrfToken"]
        foreign = client.delete(path, headers={**jar, "origin": "https://evil.example",
                                                                "sec-fetch-site": "cross-site"})  # fmt: skip
        assert foreign.status_code == 403 and foreign.json()["reason"] == "CROSS_ORIGIN_REFUSED"
        forged = client.delete(path, headers={**jar, "origin": "https://evil.example", "x-csrf-token": csrf})
        assert forged.status_code == 403 and forged.json()["reason"] == "CROSS_ORIGIN_REFUSED"
        no_token = client.delete(path, headers={**jar, "origin": real.public_url,
                                                                 "sec-fetch-site": "same-origin"})  # fmt: skip
        assert no_token.status_code == 403 and no_token.json()["reason"] == "CSRF_TOKEN_INVALID"
        logout = client.post("/me/auth/logout", headers={**jar, "origin": "https://evil.example"})
        assert logout.status_code == 403 and logout.json()["reason"] == "CROSS_ORIGIN_REFUSED"
        still = client.get("/v1/me/consents", headers=jar).json()["consents"]
        assert any(c["id"] == consent and c["status"] == "CONSENT_STATUS_ACTIVE" for c in still)
        mine = client.delete(path, headers={**jar, "origin": real.public_url, "x-csrf-token": csrf,
                                                             "sec-fetch-site": "same-origin"})  # fmt: skip
        assert mine.status_code == 200, mine.text
    assert _counted(real, "CROSS_ORIGIN_REFUSED", before) and _counted(real, "CSRF_TOKEN_INVALID", before)


def test_sign_out_ends_the_session_and_leads_to_the_providers_logout(real: LoginStack) -> None:
    answer, _ = _sign_in(real, "citizen")
    jar = {"cookie": f"passerelle-session={session_cookie(answer)}"}
    with _client(real) as client:
        csrf = client.get("/me/auth/session", headers=jar).json()["csrfToken"]
        out = client.post("/me/auth/logout", headers={**jar, "origin": real.public_url, "x-csrf-token": csrf})
        assert out.status_code == 303, out.text
        assert "/session/end" in out.headers["location"] and "id_token_hint=" in out.headers["location"]
        assert client.get("/me/auth/session", headers=jar).json() == {"configured": True, "signedIn": False}
        gone = client.get("/v1/me/accesses", headers=jar)
        assert gone.status_code == 401 and gone.json()["reason"] == "SESSION_INVALID"


def _set_cookie(response: httpx.Response, name: str) -> str:
    return next((v for v in response.headers.get_list("set-cookie") if v.startswith(f"{name}=")), "")


def test_a_sign_in_is_bound_to_the_browser_that_started_it(real: LoginStack) -> None:
    """Login CSRF (RFC 9700 §4.7): browser B opening the callback of A's sign-in gets no session, A neither."""
    before = _events(real)
    with _client(real) as a:
        start = a.get("/me/auth/login")
        binding = _set_cookie(start, "passerelle-sign-in")
        assert "HttpOnly" in binding and "SameSite=lax" in binding and "Path=/" in binding and "Max-Age=600" in binding
        back = sign_in_with_form(start.headers["location"], "citizen", real.callback)
        with _client(real) as b:   # another browser: no sign-in cookie, or its own
            assert _refusal(b.get(back)) == "SIGN_IN_STATE_INVALID"
            b.get("/me/auth/login")
            forged = b.get(back)
            assert _refusal(forged) == "SIGN_IN_STATE_INVALID" and not session_cookie(forged)
        assert _refusal(a.get(back)) == "SIGN_IN_STATE_INVALID"   # the state was spent by the forged callback
    assert _counted(real, "SIGN_IN_STATE_INVALID", before)


def test_the_callback_clears_the_sign_in_cookie_and_ends_the_browsers_previous_session(real: LoginStack) -> None:
    with _client(real) as browser:
        start = browser.get("/me/auth/login")
        first = browser.get(sign_in_with_form(start.headers["location"], "citizen", real.callback))
        old = session_cookie(first)
        assert old and _set_cookie(first, "passerelle-sign-in").startswith('passerelle-sign-in="";')
        start = browser.get("/me/auth/login")
        second = browser.get(sign_in_with_form(start.headers["location"], "citizen", real.callback))
        new = session_cookie(second)
        assert new and new != old
    with _client(real) as client:
        def signed_in(session: str) -> bool:
            who = client.get("/me/auth/session", headers={"cookie": f"passerelle-session={session}"})
            return bool(who.json()["signedIn"])

        assert not signed_in(old) and signed_in(new)


def test_sign_ins_started_by_unauthenticated_gets_stay_bounded(real: LoginStack) -> None:
    """``<img src=/me/auth/login>`` on a busy page: one client's sign-ins in progress are capped."""
    with _client(real) as client:
        for _ in range(30):
            assert client.get("/me/auth/login").status_code == 303
    db = sqlite3.connect(real.data_dir / "sessions.db")
    try:
        per_client = db.execute("SELECT max(n) FROM (SELECT count(*) AS n FROM sign_in_pending GROUP BY client_hash)")
        assert per_client.fetchone()[0] <= 20
    finally:
        db.close()
