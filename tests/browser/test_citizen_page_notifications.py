"""The citizen page shows a change notification as such: "<agency> was notified of your change of address".

A real ``gateway serve --demo`` process, a webhook receiver on 127.0.0.1, a change recorded in the demo
register's change log (as ``gateway demo change`` does); checked in headless chromium with axe-core.
Skipped like the other browser tests when chromium, axe-core or Playwright is missing (failures under CI).
"""

from __future__ import annotations

import datetime as dt
import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.demo._model import Address
from gateway.demo.changes import CHANGES_FILE, ChangeLog
from gateway.demo.data import generate
from gateway.demo.setup import demo_token
from tests.browser.test_citizen_page import _missing, axe_violations, browser, page, sign_in  # noqa: F401
from tests.gateway_process import PERSONS, SEED, GatewayProcess, start_gateway_process

pytestmark = pytest.mark.browser


class _Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path, str]]:
    """A demo gateway where CEDIES follows one person, whose address then changes."""
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the browser tests are mandatory: {reason}")
        pytest.skip(reason)
    data_dir = tmp_path_factory.mktemp("demo")
    hook = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    gw = start_gateway_process(["--demo", "--data-dir", str(data_dir), "--persons", str(PERSONS)],
                               data_dir / "gateway.log", timeout_s=60)  # fmt: skip
    try:
        nid = generate(SEED, persons=PERSONS).persons[5].national_id
        agency = {"authorization": "Bearer " + demo_token(data_dir, issuer_id="demo-agencies", subject="cedies",
                                                          scope="exchange")}  # fmt: skip
        citizen = {"authorization": "Bearer " + demo_token(data_dir, issuer_id="demo-citizens", subject=nid,
                                                           scope="citizen")}  # fmt: skip
        with httpx.Client(base_url=gw.base_url, timeout=10) as client:
            sub = client.post("/v1/subscriptions", headers=agency, json={
                "eventType": "registry.population.v1.PersonChanged", "purpose": "student-aid",
                "delivery": "DELIVERY_MODE_WEBHOOK", "webhookUrl": f"http://127.0.0.1:{hook.server_port}/hook"})
            assert sub.status_code == 200, sub.text
            r = client.post(f"/v1/subscriptions/{sub.json()['id']}/follows", headers=agency,
                            json={"nationalIds": [nid]})
            assert r.status_code == 200, r.text
            log = ChangeLog(data_dir / CHANGES_FILE)
            log.record(nid, Address("12", "rue de la Gare", "L-1616", "Luxembourg", "Luxembourg"), dt.date.today())
            log.close()
            deadline = time.monotonic() + 15
            while not any(a.get("notification") for a in client.get("/v1/me/accesses", headers=citizen).json()
                          .get("accesses", [])):  # fmt: skip
                assert time.monotonic() < deadline, "no notification in the citizen's history"
                time.sleep(0.1)
        yield gw, data_dir, nid
    finally:
        gw.stop()
        hook.shutdown()


def test_the_citizen_sees_that_cedies_was_notified_of_the_change_of_address(page: Any, stack: Any) -> None:  # noqa: F811
    gw, _, nid = stack
    sign_in(page, gw.base_url, nid)
    items = page.locator("#timeline > li")
    items.first.wait_for()
    text = items.first.inner_text()
    assert "Mitteilung einer Änderung" in text
    assert "wurde über die Änderung Ihrer Daten (Adresse) informiert" in text and "CEDIES" in text
    assert "WatchChanges" not in text and "given_names" not in text
    assert axe_violations(page, "notification-de") == []
