"""The citizen page at /me/ in Debian's headless chromium (Playwright), checked with axe-core.

Runs a real ``gateway serve --demo`` process. Skipped, with the reason, when
chromium, axe-core (``npm ci --prefix tests/browser``) or Playwright is missing;
with ``CI=true`` those are failures. Screenshots go to ``test-artifacts/browser/``.
Playwright never downloads a browser here: it launches ``/usr/bin/chromium``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.demo.data import generate
from gateway.demo.setup import demo_token
from tests.gateway_process import PERSONS, REPO, SEED, GatewayProcess, agency_headers, start_gateway_process

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("PASSERELLE_CHROMIUM", "/usr/bin/chromium"))
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


def _missing() -> str:
    if not CHROMIUM.exists():
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    if not AXE.exists():
        return f"no axe-core at {AXE} (npm ci --prefix tests/browser)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return ""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path, str]]:
    """A demo gateway with accesses by cedies and an active consent for one demo citizen."""
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the browser tests are mandatory: {reason}")
        pytest.skip(reason)
    data_dir = tmp_path_factory.mktemp("demo")
    gw = start_gateway_process(["--demo", "--data-dir", str(data_dir), "--persons", str(PERSONS)],
                               data_dir / "gateway.log", timeout_s=60)  # fmt: skip
    try:
        nid = generate(SEED, persons=PERSONS).persons[3].national_id
        with httpx.Client(base_url=gw.base_url, timeout=10) as client:
            for n in range(2):
                r = client.get(f"/v1/population/persons/{nid}", headers=agency_headers(data_dir, f"web-{n}"))
                assert r.status_code == 200, r.text
            _grant_consent(client, data_dir, nid)
        yield gw, data_dir, nid
    finally:
        gw.stop()


def _grant_consent(client: httpx.Client, data_dir: Path, nid: str) -> None:
    token = demo_token(data_dir, issuer_id="demo-citizens", subject=nid, scope="citizen")
    r = client.post("/v1/me/consents", headers={"authorization": f"Bearer {token}"},
                    json={"consumer": "cedies", "purpose": "student-aid"})  # fmt: skip
    assert r.status_code == 200, f"POST /v1/me/consents: {r.status_code} {r.text}"


@pytest.fixture(scope="module")
def browser(stack: Any) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    locale = getattr(request, "param", "de-DE")
    # bypass_csp only so that axe-core can be injected; the page itself runs under its strict CSP.
    context = browser.new_context(locale=locale, bypass_csp=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def axe_violations(page: Any, view: str) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is; save a screenshot named after the view."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{view}.png"), full_page=True)
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    violations = result["violations"]
    (ARTIFACTS / f"{view}.axe.json").write_text(json.dumps(violations, indent=2))
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]} for v in violations]


def sign_in(page: Any, base_url: str, nid: str) -> None:
    page.goto(f"{base_url}/me/")
    page.get_by_role("textbox", name="Nationale Identifikationsnummer (13 Ziffern)").fill(nid)
    page.get_by_role("button", name="Als dieser Demo-Bürger anmelden").click()
    page.get_by_role("heading", name="Abrufe meiner Daten").wait_for()


def test_sign_in_page_follows_the_browser_language_and_has_no_axe_violations(page: Any, stack: Any) -> None:
    gw, _, _ = stack
    page.goto(f"{gw.base_url}/me/")
    page.get_by_role("heading", name="Wer hat meine Daten abgerufen").wait_for()
    assert page.evaluate("document.documentElement.lang") == "de"
    page.get_by_text("Demonstration:").wait_for()   # the demo sign-in is offered in demo mode
    assert axe_violations(page, "signin-de") == []


def test_a_demo_citizen_sees_the_accesses_made_by_cedies(page: Any, stack: Any) -> None:
    gw, _, nid = stack
    sign_in(page, gw.base_url, nid)
    items = page.locator("#timeline > li")
    items.first.wait_for()
    assert items.count() == 2
    first = items.first.inner_text()
    assert "CEDIES" in first and "Studienbeihilfe" in first and "Daten übermittelt" in first
    assert "Aufgabe im öffentlichen Interesse" in first and "Nationales Register der natürlichen Personen" in first
    for code in ("A6-1-e", "family_name", "given_names", "registry.population", "PopulationRegistry"):
        assert code not in first   # the page speaks the reader's words, not the contract's
    assert axe_violations(page, "accesses-de") == []


def test_switching_language_rewrites_the_page(page: Any, stack: Any) -> None:
    gw, _, nid = stack
    sign_in(page, gw.base_url, nid)
    page.get_by_role("button", name="English").click()
    page.get_by_role("heading", name="Accesses to my data").wait_for()
    assert page.evaluate("document.documentElement.lang") == "en"
    page.locator("#timeline").get_by_text("Student financial aid").first.wait_for()
    assert page.get_by_role("button", name="English").get_attribute("aria-pressed") == "true"
    page.get_by_role("button", name="Français").click()
    page.get_by_role("heading", name="Consultations de mes données").wait_for()
    page.locator("#timeline").get_by_text("Aide financière pour études supérieures").first.wait_for()
    assert axe_violations(page, "accesses-fr") == []
    page.reload()   # the choice is remembered
    page.get_by_role("heading", name="Consultations de mes données").wait_for()


def test_a_citizen_revokes_a_consent_by_keyboard(page: Any, stack: Any) -> None:
    gw, _, nid = stack
    sign_in(page, gw.base_url, nid)
    page.get_by_role("link", name="Meine Einwilligungen").click()
    revoke = page.get_by_role("button", name="Einwilligung widerrufen: CEDIES - aide financière de l'État pour "
                              "études supérieures")  # fmt: skip
    revoke.wait_for()
    assert axe_violations(page, "consents-de") == []
    revoke.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Diese Einwilligung widerrufen?")
    dialog.wait_for()
    assert "ohne neue Einwilligung nicht mehr abrufen" in dialog.inner_text()
    assert axe_violations(page, "consents-confirm-de") == []
    page.keyboard.press("Escape")    # cancelling changes nothing and gives the focus back
    assert page.evaluate("document.activeElement.textContent") == "Einwilligung widerrufen"
    page.keyboard.press("Enter")
    dialog.get_by_role("button", name="Ja, widerrufen").click()
    page.get_by_role("status").filter(has_text="Die Einwilligung ist widerrufen.").wait_for()
    assert page.get_by_role("button", name="Einwilligung widerrufen").count() == 0
    assert "Widerrufen" in page.locator("#consents").inner_text()
    assert axe_violations(page, "consents-revoked-de") == []

