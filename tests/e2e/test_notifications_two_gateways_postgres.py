"""Two `gateway serve` processes on one PostgreSQL share the change-notification outbox (issue 17).

Both read the demo population register's change stream and deliver from one outbox (consents, audit and
notifications all in a throw-away database). Under a bounded load of demo changes to four webhook
subscribers (loopback receivers that verify the Standard Webhooks signature and record when each request
began and ended): every event reaches every subscriber, no (event, subscriber) is ever in flight twice at
once, a person's events arrive in order, both gateways delivered a share, each delivery is recorded once,
and the shared log verifies. And one of two gateways killed with kill -9 mid-load leaves its leased rows
to the other once their lease runs out. Skipped without PostgreSQL, failed when CI=true.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from standardwebhooks import Webhook

from adapters.stores.audit_postgres import PostgresAuditLog
from gateway.demo._model import Address
from gateway.demo.changes import ChangeLog
from gateway.demo.data import generate
from gateway.demo.setup import demo_token
from tests.gateway_process import SEED, GatewayProcess, demo_registries, start_gateway_process, write_config
from tests.integration.conftest import PG_DSN, require_postgres

pytestmark = pytest.mark.postgres
SUBSCRIBERS, PERSONS, CHANGES = 4, 30, 120
EVENT_TYPE = "registry.population.v1.PersonChanged"
_DELIVERED = re.compile(r'^passerelle_notifications_delivered_total\{[^}]*consumer="cedies"[^}]*\} (\S+)$', re.M)


@dataclass
class _Hit:
    event_id: str
    subject: str
    start: float
    end: float


@dataclass
class _Log:
    secret: str = ""
    hits: list[_Hit] = field(default_factory=list)
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.log = _Log()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/hook"


class _Hook(http.server.BaseHTTPRequestHandler):
    server: _Receiver
    protocol_version = "HTTP/1.1"   # keep-alive, as real endpoints: several requests per connection

    def do_POST(self) -> None:
        start = time.monotonic()
        body = self.rfile.read(int(self.headers["content-length"]))
        log = self.server.log
        try:
            event = Webhook(log.secret).verify(body, dict(self.headers.items()))
            subject = str(event["subject"])
        except Exception:
            with log.lock:
                log.bad_signatures += 1
            subject = ""
        time.sleep(0.02)   # in flight a while: a second, concurrent delivery would overlap this one
        with log.lock:
            log.hits.append(_Hit(self.headers["webhook-id"], subject, start, time.monotonic()))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def _url(params: dict[str, object]) -> str:
    p = {k: str(v) for k, v in params.items()}
    user = quote(p.pop("user", ""), safe="")
    password = p.pop("password", None)
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host, port, dbname = p.pop("host", "localhost"), p.pop("port", "5432"), quote(p.pop("dbname", ""), safe="")
    query = "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in p.items()) if p else ""
    return f"postgresql://{auth}{host}:{port}/{dbname}{query}"


@pytest.fixture
def database() -> Iterator[str]:
    """A throw-away database, as a URL (the gateway selects PostgreSQL by the scheme); dropped afterwards."""
    require_postgres()
    name = f"passerelle_ntf_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield _url({**conninfo_to_dict(PG_DSN), "dbname": name})
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


def _config(data_dir: Path, grpc_port: int, tax_port: int, database: str, notifications: str = "") -> Path:
    path = write_config(data_dir, grpc_port, tax_port, demo=True, audit=database, consents=database)
    text = path.read_text()
    assert 'store = "sqlite:notifications.db"\n' in text, "the demo configuration changed shape"
    path.write_text(text.replace('store = "sqlite:notifications.db"\n', f'store = "{database}"\n{notifications}', 1))
    return path


def _subscribe(client: httpx.Client, data_dir: Path, receiver: _Receiver, nids: list[str]) -> None:
    token = demo_token(data_dir, issuer_id="demo-agencies", subject="cedies", scope="exchange")
    h = {"authorization": f"Bearer {token}"}
    body = {"eventType": EVENT_TYPE, "purpose": "student-aid", "delivery": "DELIVERY_MODE_WEBHOOK",
            "webhookUrl": receiver.url}
    r = client.post("/v1/subscriptions", headers=h, json=body)
    assert r.status_code == 200, r.text
    receiver.log.secret = str(r.json()["signingSecret"])
    followed = client.post(f"/v1/subscriptions/{r.json()['id']}/follows", headers=h, json={"nationalIds": nids})
    assert followed.status_code == 200, followed.text


def _delivered(gateway: GatewayProcess) -> float:
    with urllib.request.urlopen(f"{gateway.base_url}/metrics", timeout=10) as answer:
        return sum(float(v) for v in _DELIVERED.findall(answer.read().decode()))


def _overlaps(hits: list[_Hit]) -> list[str]:
    """Event ids received twice with the two requests in flight at the same time."""
    by_event: dict[str, list[_Hit]] = {}
    for h in hits:
        by_event.setdefault(h.event_id, []).append(h)
    bad = []
    for event_id, seen in by_event.items():
        seen.sort(key=lambda h: h.start)
        bad += [event_id for a, b in pairwise(seen) if b.start < a.end]
    return bad


def _out_of_order(hits: list[_Hit]) -> list[str]:
    """Per person, the first receipt of each event by sequence: each must begin after the previous one ended."""
    first: dict[str, _Hit] = {}
    for h in sorted(hits, key=lambda h: h.start):
        first.setdefault(h.event_id, h)
    by_subject: dict[str, list[_Hit]] = {}
    for h in first.values():
        by_subject.setdefault(h.subject, []).append(h)
    bad = []
    for seen in by_subject.values():
        seen.sort(key=lambda h: int(h.event_id.rsplit("-", 1)[1]))
        bad += [b.event_id for a, b in pairwise(seen) if b.start < a.end]
    return bad


async def test_two_gateways_share_the_outbox_without_delivering_one_event_twice_at_once(
        database: str, tmp_path: Path) -> None:  # fmt: skip
    nids = [h.members[0] for h in generate(SEED, persons=400).households[:PERSONS]]
    receivers = [_Receiver() for _ in range(SUBSCRIBERS)]
    for r in receivers:
        threading.Thread(target=r.serve_forever, daemon=True).start()
    changes_file = tmp_path / "changes.db"
    try:
        with demo_registries(changes=changes_file) as (grpc_port, tax_port):
            config = _config(tmp_path, grpc_port, tax_port, database)
            a = start_gateway_process(["--config", str(config)], tmp_path / "a.log")
            try:
                b = start_gateway_process(["--config", str(config)], tmp_path / "b.log")
                try:
                    with httpx.Client(base_url=a.base_url, timeout=10) as client:
                        for r in receivers:
                            _subscribe(client, tmp_path, r, nids)
                    log = ChangeLog(changes_file)
                    expected = {log.record(nids[n % PERSONS], Address(str(n + 1), "rue Neuve", "L-4000", "Esch",
                                                                      "Esch"), dt.date(2026, 12, 1)).event_id
                                for n in range(CHANGES)}  # fmt: skip
                    log.close()
                    deadline = time.monotonic() + 45
                    while not all({h.event_id for h in r.log.hits} >= expected for r in receivers):
                        assert time.monotonic() < deadline, "events not delivered within 45 s"
                        time.sleep(0.1)
                    time.sleep(0.5)   # a duplicate in flight would land now
                    shares = [_delivered(a), _delivered(b)]
                finally:
                    assert b.stop() == 0
            finally:
                assert a.stop() == 0
    finally:
        for r in receivers:
            r.shutdown()
    for r in receivers:
        assert r.log.bad_signatures == 0
        assert {h.event_id for h in r.log.hits} == expected
        assert _overlaps(r.log.hits) == []
        assert _out_of_order(r.log.hits) == []
    assert all(share > 0 for share in shares), f"one gateway delivered nothing: {shares}"
    assert sum(shares) >= SUBSCRIBERS * CHANGES
    with psycopg.connect(database) as conn:   # one OK record per delivery, whichever gateway made it
        rows = conn.execute("SELECT extra FROM passerelle_audit.audit_log WHERE outcome = 'ok'").fetchall()
    extras = [json.loads(x) for (x,) in rows]
    recorded = [(e["event_id"], e["subscription"]) for e in extras if e.get("notification") == "1"]
    assert len(recorded) == len(set(recorded)) == SUBSCRIBERS * CHANGES
    audit = PostgresAuditLog(database)
    await audit.start()
    try:
        assert (await audit.verify()).ok
    finally:
        await audit.close()


async def test_a_gateway_killed_while_delivering_leaves_its_leases_to_the_other(
        database: str, tmp_path: Path) -> None:  # fmt: skip
    """kill -9 of one of two gateways in the middle of the load: the rows it had leased come free when their
    lease runs out (lease_s = 2 s) and the other gateway delivers them; every event reaches every subscriber,
    never in flight twice at once, and the shared log (into which the killed one was writing) verifies."""
    nids = [h.members[0] for h in generate(SEED, persons=400).households[:PERSONS]]
    receivers = [_Receiver() for _ in range(2)]
    for r in receivers:
        threading.Thread(target=r.serve_forever, daemon=True).start()
    changes_file = tmp_path / "changes.db"
    try:
        with demo_registries(changes=changes_file) as (grpc_port, tax_port):
            config = _config(tmp_path, grpc_port, tax_port, database, "lease_s = 2.0\n")
            a = start_gateway_process(["--config", str(config)], tmp_path / "a.log")
            try:
                b = start_gateway_process(["--config", str(config)], tmp_path / "b.log")
                try:
                    with httpx.Client(base_url=b.base_url, timeout=10) as client:
                        for r in receivers:
                            _subscribe(client, tmp_path, r, nids)
                    log = ChangeLog(changes_file)
                    expected = {log.record(nids[n % PERSONS], Address(str(n + 1), "rue Haute", "L-4000", "Esch",
                                                                      "Esch"), dt.date(2026, 12, 1)).event_id
                                for n in range(CHANGES)}  # fmt: skip
                    log.close()
                    deadline = time.monotonic() + 30
                    while sum(len(r.log.hits) for r in receivers) < 40:
                        assert time.monotonic() < deadline, "no delivery before the kill"
                        time.sleep(0.02)
                    a.kill()   # kill -9: its leases stay in the outbox until they run out
                    before = sum(len({h.event_id for h in r.log.hits}) for r in receivers)
                    assert before < 2 * CHANGES, "everything was delivered before the kill: the load is too small"
                    deadline = time.monotonic() + 45
                    while not all({h.event_id for h in r.log.hits} >= expected for r in receivers):
                        assert time.monotonic() < deadline, "events lost with the killed gateway"
                        time.sleep(0.1)
                finally:
                    assert b.stop() == 0
            finally:
                if a.proc.poll() is None:
                    a.kill()
    finally:
        for r in receivers:
            r.shutdown()
    for r in receivers:
        assert r.log.bad_signatures == 0
        assert {h.event_id for h in r.log.hits} == expected
        assert _overlaps(r.log.hits) == []
    audit = PostgresAuditLog(database)
    await audit.start()
    try:
        assert (await audit.verify()).ok
    finally:
        await audit.close()
