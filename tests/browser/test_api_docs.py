"""``/docs`` renders the gateway's OpenAPI 3.1 document in Debian's headless chromium, offline.

Swagger UI 4 cannot read OpenAPI 3.1 ("Unable to render this definition"); this
test proves the page the gateway serves lists the operations, with every asset
from the gateway itself (any request elsewhere is aborted and fails the test).
Skipped, with the reason, when chromium or Playwright is missing (failures with ``CI=true``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_process import PERSONS, GatewayProcess, start_gateway_process

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("PASSERELLE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


def _missing() -> str:
    if not CHROMIUM.exists():
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return ""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the browser tests are mandatory: {reason}")
        pytest.skip(reason)
    data_dir = tmp_path_factory.mktemp("docs")
    gw = start_gateway_process(["--demo", "--data-dir", str(data_dir), "--persons", str(PERSONS)],
                               data_dir / "gateway.log", timeout_s=60)  # fmt: skip
    try:
        yield gw
    finally:
        gw.stop()


def test_docs_lists_the_operations_of_the_openapi_31_document_with_no_asset_from_elsewhere(
    gateway: GatewayProcess,
) -> None:
    from playwright.sync_api import sync_playwright

    elsewhere: list[str] = []
    errors: list[str] = []

    def only_the_gateway(route: Any) -> None:
        if route.request.url.startswith(gateway.base_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.route("**/*", only_the_gateway)
            page.goto(f"{gateway.base_url}/docs")
            page.locator(".opblock").first.wait_for(timeout=30_000)
            operations = page.locator(".opblock-summary-path").all_inner_texts()
            content = page.content()
        finally:
            browser.close()
    assert "Unable to render" not in content
    assert any(path.startswith("/v1/population/persons/") for path in operations), operations
    assert elsewhere == [] and errors == []
