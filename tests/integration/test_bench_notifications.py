"""The notification benchmark's receivers (``bench.notifications.Receivers``) on loopback: a request signed
per Standard Webhooks with the subscriber's secret is counted as delivered; an unsigned or wrongly signed
one is refused (400) and counted as bad, never as a delivery. And the table says why a store was skipped."""

from __future__ import annotations

import base64
import datetime as dt

import httpx
from standardwebhooks import Webhook

from bench.notifications import Receivers, table

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"x" * 32).decode()


def _signed(secret: str, event_id: str, body: str) -> dict[str, str]:
    now = dt.datetime.now(dt.UTC)
    return {"webhook-id": event_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(event_id, now, body),
            "content-type": "application/json"}  # fmt: skip


def test_receivers_count_signed_deliveries_and_refuse_the_rest() -> None:
    receivers = Receivers(2)
    receivers.start()
    try:
        receivers.set_secret(0, SECRET)
        receivers.set_secret(1, SECRET)
        body = '{"id": "rnpp-1"}'
        with httpx.Client(timeout=10) as client:
            ok = client.post(receivers.urls[0], content=body, headers=_signed(SECRET, "rnpp-1", body))
            forged = client.post(receivers.urls[1], content=body, headers=_signed(OTHER, "rnpp-1", body))
            unsigned = client.post(receivers.urls[1], content=body, headers={"webhook-id": "rnpp-2"})
        assert (ok.status_code, forged.status_code, unsigned.status_code) == (204, 400, 400)
        assert receivers.delivered() == {(0, "rnpp-1")}
        assert receivers.bad == 2
    finally:
        receivers.stop()


def test_the_table_names_a_skipped_store_and_why() -> None:
    text = table({"subscribers": 10, "rows": [{"store": "postgres", "skipped": "no PostgreSQL at 'x'"}]})
    assert "postgres  skipped: no PostgreSQL at 'x'" in text
