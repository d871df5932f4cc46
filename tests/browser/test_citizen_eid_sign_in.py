"""The citizen page with an eID sign-in, end to end: Debian's chromium, a ``gateway serve`` process with
``[citizen_login]``, and a real OpenID Provider (npm oidc-provider) with its own sign-in form.

The citizen signs in through the provider's form, sees the accesses, withdraws a consent after the
confirmation, and signs out (the session ends at the gateway, the provider's logout page is reached).
axe-core runs on each view in each language, signed in and signed out; screenshots of the signed-in
page in fr/de/en go to ``test-artifacts/browser/``. Skipped, with the reason, when chromium, axe-core,
node, oidc-provider or Playwright is missing; with ``CI=true`` those are failures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.demo.data import generate
from gateway.demo.setup import demo_token
from tests.browser.test_citizen_page import CHROMIUM_ARGS, _missing, axe_violations
from tests.citizen_login_stack import CLIENT_ID, CLIENT_SECRET, LoginStack, free_port, gateway_with_login
from tests.gateway_process import PERSONS, SEED, agency_headers
from tests.oidc_provider import ACR_HIGH, ACR_SUBSTANTIAL, OidcProviderProcess, missing, oidc_provider

pytestmark = pytest.mark.browser

NID = generate(SEED, persons=PERSONS).persons[5].national_id
SIGN_IN = {"fr": "Se connecter avec mon identité électronique (eID)",
           "de": "Mit meiner elektronischen Identität (eID) anmelden",
           "en": "Sign in with my electronic identity (eID)"}  # fmt: skip
ACCESSES = {"fr": "Consultations de mes données", "de": "Abrufe meiner Daten", "en": "Accesses to my data"}
LANGUAGE = {"fr": "Français", "de": "Deutsch", "en": "English"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoginStack, OidcProviderProcess]]:
    """The provider, and a gateway signing in with it; two accesses by cedies and a consent for NID."""
    reason = _missing() or missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the browser tests are mandatory: {reason}")
        pytest.skip(reason)
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    clients = [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [f"{public}/me/auth/callback"],
                "post_logout_redirect_uris": [f"{public}/me/"]}]  # fmt: skip
    tmp = tmp_path_factory.mktemp("eid-page")
    with oidc_provider(clients, {"citizen": {"national_id": NID, "acr": ACR_HIGH}}, tmp / "provider.log") as op, \
            gateway_with_login(tmp, op.issuer, port, acr=ACR_SUBSTANTIAL, subject_claim="national_id") as s:
        with httpx.Client(base_url=s.public_url, timeout=10) as client:
            for n in range(2):
                r = client.get(f"/v1/population/persons/{NID}", headers=agency_headers(s.data_dir, f"eid-{n}"))
                assert r.status_code == 200, r.text
            token = demo_token(s.data_dir, issuer_id="demo-citizens", subject=NID, scope="citizen")
            r = client.post("/v1/me/consents", headers={"authorization": f"Bearer {token}"},
                            json={"consumer": "cedies", "purpose": "student-aid"})  # fmt: skip
            assert r.status_code == 200, r.text
        yield s, op


@pytest.fixture(scope="module")
def browser(stack: Any) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # bypass_csp only so that axe-core can be injected; the page itself runs under its strict CSP.
    context = browser.new_context(locale="fr-FR", bypass_csp=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def _language(page: Any, lang: str) -> None:
    page.get_by_role("button", name=LANGUAGE[lang]).click()
    page.wait_for_function(f"document.documentElement.lang === '{lang}'")


def _sign_in(page: Any, public_url: str) -> None:
    page.goto(f"{public_url}/me/")
    page.get_by_role("link", name=SIGN_IN["fr"]).click()
    page.locator("input[name=login]").fill("citizen")   # the provider's own form (oidc-provider devInteractions)
    page.locator("input[name=password]").fill("any password")
    page.locator("button[type=submit]").first.click()
    page.get_by_role("heading", name=ACCESSES["fr"]).wait_for()


def _session(s: LoginStack, page: Any) -> dict[str, Any]:
    cookies = {c["name"]: c["value"] for c in page.context.cookies(s.public_url)}
    with httpx.Client(base_url=s.public_url, timeout=10) as client:
        jar = {"cookie": f"passerelle-session={cookies.get('passerelle-session', '')}"}
        result: dict[str, Any] = client.get("/me/auth/session", headers=jar).json()
        return result


def test_signed_out_the_page_offers_the_eid_sign_in_in_each_language_without_axe_violations(
    page: Any, stack: Any
) -> None:
    s, _ = stack
    page.goto(f"{s.public_url}/me/")
    for lang in ("fr", "de", "en"):
        _language(page, lang)
        page.get_by_role("link", name=SIGN_IN[lang]).wait_for()
        assert axe_violations(page, f"eid-signin-{lang}") == []


def test_a_citizen_signs_in_with_the_eid_sees_the_accesses_withdraws_a_consent_and_signs_out(
    page: Any, stack: Any
) -> None:
    s, op = stack
    _sign_in(page, s.public_url)
    assert _session(s, page)["nationalId"] == NID
    items = page.locator("#timeline > li")
    items.first.wait_for()
    assert items.count() == 2 and "CEDIES" in items.first.inner_text()
    newest = items.first.inner_text()   # data items by the contract's names, the legal text in French
    assert "Prénoms" in newest and "Nom de famille" in newest and "given_names" not in newest
    ids = [int(t) for t in page.locator("#timeline dd:last-child").all_inner_texts() if t.strip().isdigit()]
    assert ids == sorted(ids, reverse=True) and len(ids) == 2   # newest first
    for lang in ("fr", "de", "en"):   # every view, every language, signed in
        _language(page, lang)
        page.get_by_role("heading", name=ACCESSES[lang]).wait_for()
        page.locator("#timeline > li").first.wait_for()
        assert axe_violations(page, f"eid-signed-in-{lang}") == []   # the screenshot of the signed-in page
        page.locator("#nav-consents").click()
        page.locator("#consents button.danger").first.wait_for()
        assert axe_violations(page, f"eid-consents-{lang}") == []
        page.locator("#nav-accesses").click()
    _language(page, "de")
    page.locator("#nav-consents").click()
    page.get_by_role("button", name="Einwilligung widerrufen").first.click()
    dialog = page.get_by_role("dialog", name="Diese Einwilligung widerrufen?")
    dialog.wait_for()
    assert "ohne neue Einwilligung nicht mehr abrufen" in dialog.inner_text()
    assert axe_violations(page, "eid-consents-confirm-de") == []
    dialog.get_by_role("button", name="Ja, widerrufen").click()   # the DELETE carries the cookie and x-csrf-token
    page.get_by_role("status").filter(has_text="Die Einwilligung ist widerrufen.").wait_for()
    assert page.get_by_role("button", name="Einwilligung widerrufen").count() == 0
    page.get_by_role("button", name="Abmelden").click()
    page.wait_for_url(f"{op.issuer}/session/end**")   # RP-initiated logout at the provider
    assert _session(s, page) == {"configured": True, "signedIn": False}   # ended at the gateway already
    page.locator("button[name=logout]").click()   # the provider's own confirmation, then back to the page
    page.wait_for_url(f"{s.public_url}/me/**")
    page.get_by_role("link", name=SIGN_IN["de"]).wait_for()


def test_a_reason_code_naming_an_object_property_and_a_failed_sign_out_are_shown_as_such(
    page: Any, stack: Any
) -> None:
    """``?signin_error=constructor`` is an unknown reason, not ``function Object()``; a sign-out the gateway
    did not receive leaves the page signed in (the session still lives there), saying it failed."""
    s, _ = stack
    page.goto(f"{s.public_url}/me/?signin_error=constructor")
    status = page.get_by_role("status")
    status.filter(has_text="la demande a été refusée").wait_for()
    assert "function" not in status.inner_text()
    _sign_in(page, s.public_url)
    page.route("**/me/auth/logout", lambda route: route.abort())
    page.locator("#signout").click()
    status.filter(has_text="La demande a échoué").wait_for()
    assert page.get_by_role("heading", name=ACCESSES["fr"]).is_visible() and _session(s, page)["signedIn"]
    page.unroute("**/me/auth/logout")
