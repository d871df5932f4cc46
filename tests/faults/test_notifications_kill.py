"""kill -9 of a real gateway process while it delivers change notifications under a bounded load (issue 17).

After a restart on the same data folder (SQLite outbox): every change of a followed person reached the
agency at least once, nothing reached the agency whose mandate was revoked before the changes, each of
its events is recorded as refused, and the exchange log verifies.
"""

from __future__ import annotations

import datetime as dt
import http.server
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from adapters.stores.audit_sqlite import SqliteAuditLog
from gateway.core.ports import AuditQuery
from gateway.core.types import Outcome
from gateway.demo._model import Address
from gateway.demo.changes import ChangeLog
from gateway.demo.data import generate
from gateway.demo.setup import demo_token
from tests.gateway_process import REPO, SEED, demo_registries, start_gateway_process, write_config

CHANGES = 60
PERSONS = 30
RECEIVED_BEFORE_KILL = 10
EVENT_TYPE = "registry.population.v1.PersonChanged"
WATCH = "registry.population.v1.PopulationRegistry/WatchChanges"


class _Receiver(http.server.ThreadingHTTPServer):
    def __init__(self, delay_s: float) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.delay_s, self.lock = delay_s, threading.Lock()
        self.ids: list[str] = []


class _Hook(http.server.BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        time.sleep(self.server.delay_s)   # deliveries stay in flight a while
        with self.server.lock:
            self.server.ids.append(self.headers["webhook-id"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def _serve(delay_s: float) -> _Receiver:
    receiver = _Receiver(delay_s)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    return receiver


def _config(tmp_path: Path, grpc_port: int, tax_port: int) -> Path:
    path = write_config(tmp_path, grpc_port, tax_port, demo=True)
    text = path.read_text().replace("[notifications]\n", "[notifications]\nlease_s = 2.0\nworkers = 4\n", 1)
    path.write_text(text)
    return path


def _token(data_dir: Path, issuer_id: str, subject: str, scope: str) -> dict[str, str]:
    return {"authorization": "Bearer " + demo_token(data_dir, issuer_id=issuer_id, subject=subject, scope=scope)}


def _subscribe(client: httpx.Client, data_dir: Path, consumer: str, purpose: str, url: str, nids: list[str]) -> str:
    h = _token(data_dir, issuer_id="demo-agencies", subject=consumer, scope="exchange")
    r = client.post("/v1/subscriptions", headers=h, json={"eventType": EVENT_TYPE, "purpose": purpose,
                                                           "delivery": "DELIVERY_MODE_WEBHOOK", "webhookUrl": url})
    assert r.status_code == 200, r.text
    sub_id = str(r.json()["id"])
    assert client.post(f"/v1/subscriptions/{sub_id}/follows", headers=h,
                       json={"nationalIds": nids}).status_code == 200  # fmt: skip
    return sub_id


def _wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


async def test_kill_9_while_delivering_loses_nothing_and_sends_nothing_after_a_revocation(tmp_path: Path) -> None:
    nids = [h.members[0] for h in generate(SEED, persons=400).households[:PERSONS]]
    changes_file = tmp_path / "changes.db"
    agency, revoked_agency = _serve(delay_s=0.05), _serve(delay_s=0.0)
    with demo_registries(changes=changes_file) as (grpc_port, tax_port):
        config = _config(tmp_path, grpc_port, tax_port)
        first = start_gateway_process(["--config", str(config)], tmp_path / "first.log")
        try:
            admin = _token(tmp_path, issuer_id="demo-staff", subject="admin", scope="admin")
            with httpx.Client(base_url=first.base_url, timeout=10) as client:
                mandate = {"id": "procurement-changes", "consumer": "procurement", "service": WATCH,
                           "purposes": ["procurement-check"], "legalBasis": "A6-1-e", "fields": ["address"]}
                assert client.put("/v1/admin/mandates/procurement-changes", json=mandate,
                                  headers=admin).status_code == 200  # fmt: skip
                _subscribe(client, tmp_path, "cedies", "student-aid", f"http://127.0.0.1:{agency.server_port}/h",
                           nids)  # fmt: skip
                _subscribe(client, tmp_path, "procurement", "procurement-check",
                           f"http://127.0.0.1:{revoked_agency.server_port}/h", nids)  # fmt: skip
                assert client.delete("/v1/admin/mandates/procurement-changes", headers=admin).status_code == 200
            log = ChangeLog(changes_file)
            expected = {log.record(nids[n % PERSONS], Address(str(n + 1), "rue Neuve", "L-4000", "Esch", "Esch"),
                                   dt.date(2026, 12, 1)).event_id for n in range(CHANGES)}  # fmt: skip
            log.close()
            _wait(lambda: len(agency.ids) >= RECEIVED_BEFORE_KILL, 30, "no delivery before the kill")
            first.kill()   # kill -9 with deliveries in flight
        finally:
            if first.proc.poll() is None:
                first.kill()
        before_restart = len(agency.ids)
        assert before_restart < CHANGES, "every event was delivered before the kill: the load is too small"
        second = start_gateway_process(["--config", str(config)], tmp_path / "second.log")
        try:
            _wait(lambda: set(agency.ids) >= expected, 60, "events lost across the kill")
        finally:
            assert second.stop() == 0
    agency.shutdown()
    revoked_agency.shutdown()
    assert revoked_agency.ids == []   # revoked before the changes: nothing sent, before or after the kill
    verify = subprocess.run([sys.executable, "-m", "gateway.entrypoints.cli", "audit", "verify", "--config",
                             str(config)], cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    audit = SqliteAuditLog(tmp_path / "audit.db")
    await audit.start()
    try:
        records = [s.record for s in await audit.query(AuditQuery(limit=100_000))
                   if s.record.extra.get("notification") == "1"]  # fmt: skip
    finally:
        await audit.close()
    refused = {r.extra["event_id"] for r in records if r.consumer == "procurement"}
    assert refused == expected and all(r.outcome is Outcome.REFUSED and r.reason == "NO_MANDATE"
                                       for r in records if r.consumer == "procurement")  # fmt: skip
    delivered = {r.extra["event_id"] for r in records if r.consumer == "cedies" and r.outcome is Outcome.OK}
    assert delivered == expected
