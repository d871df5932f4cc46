"""Two `gateway serve` processes on one PostgreSQL database (consents, mandates and audit all there):
one consent state and one log. A revocation through one is refused on the other within 1 s
(docs/consent.md: worst case 0.5 s), and a one-exchange consent is served at most once across both.

Each run gets a throw-away database, dropped afterwards (skipped when no PostgreSQL answers,
failed when CI=true; see tests/integration/conftest.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from adapters.stores.audit_postgres import PostgresAuditLog
from gateway.demo.data import DemoData, generate
from gateway.demo.setup import demo_token
from tests.gateway_process import GatewayProcess, demo_registries, start_gateway_process, write_config
from tests.integration.conftest import PG_DSN, require_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio(loop_scope="module")]
SEED, PERSONS = 20260101, 200
GUARANTEE_S = 1.0


def _url(params: dict[str, object]) -> str:
    """A postgresql:// URL for libpq parameters (the gateway's config selects PostgreSQL by the scheme)."""
    p = {k: str(v) for k, v in params.items()}
    user = quote(p.pop("user", ""), safe="")
    password = p.pop("password", None)
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host, port, dbname = p.pop("host", "localhost"), p.pop("port", "5432"), quote(p.pop("dbname", ""), safe="")
    query = f"?{urlencode(p)}" if p else ""
    return f"postgresql://{auth}{host}:{port}/{dbname}{query}"


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A throw-away database, as a URL; dropped with whatever is still connected to it."""
    require_postgres()
    name = f"passerelle_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield _url({**conninfo_to_dict(PG_DSN), "dbname": name})
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@dataclass
class Pair:
    data: DemoData
    data_dir: Path
    url: str
    a: GatewayProcess
    b: GatewayProcess

    def token(self, **kw: str) -> str:
        return demo_token(self.data_dir, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pair(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    data_dir = tmp_path_factory.mktemp("pg-pair")
    with demo_registries(PERSONS) as (grpc_port, tax_port):
        config = write_config(data_dir, grpc_port, tax_port, audit=database, consents=database)
        a = start_gateway_process(["--config", str(config)], data_dir / "a.log")
        try:
            b = start_gateway_process(["--config", str(config)], data_dir / "b.log")
            try:
                yield Pair(generate(SEED, persons=PERSONS), data_dir, database, a, b)
            finally:
                b.stop()
        finally:
            a.stop()


def taxpayers(pair: Pair) -> list[str]:
    return [p.national_id for p in pair.data.persons if pair.data.income(p.national_id, 2024) is not None]


async def fetch(client: httpx.AsyncClient, pair: Pair, nid: str) -> tuple[int, str]:
    headers = {
        "authorization": f"Bearer {pair.token(issuer_id='demo-agencies', subject='cedies', scope='exchange')}",
        "x-purpose": "student-aid",
    }
    r = await client.get(f"/v1/tax/income-certificates/{nid}/2024", headers=headers)
    return r.status_code, r.json().get("reason", "")


async def grant(client: httpx.AsyncClient, pair: Pair, nid: str, **extra: object) -> tuple[str, dict[str, str]]:
    citizen = {"authorization": f"Bearer {pair.token(issuer_id='demo-citizens', subject=nid, scope='citizen')}"}
    body = {"consumer": "cedies", "purpose": "student-aid", **extra}
    granted = await client.post("/v1/me/consents", headers=citizen, json=body)
    assert granted.status_code == 200, granted.text
    return str(granted.json()["id"]), citizen


async def test_revocation_through_one_process_is_refused_on_the_other_within_one_second(pair: Pair) -> None:
    nid = taxpayers(pair)[0]
    async with httpx.AsyncClient(base_url=pair.a.base_url, timeout=10) as a, \
            httpx.AsyncClient(base_url=pair.b.base_url, timeout=10) as b:  # fmt: skip
        consent_id, citizen = await grant(a, pair, nid)
        assert await fetch(b, pair, nid) == (200, "")  # B has now cached the live consent
        assert (await a.delete(f"/v1/me/consents/{consent_id}", headers=citizen)).status_code == 200
        done = time.monotonic()
        assert await fetch(a, pair, nid) == (403, "CONSENT_REVOKED")  # at once where it was taken
        await asyncio.sleep(max(0.0, GUARANTEE_S - (time.monotonic() - done)))
        assert await fetch(b, pair, nid) == (403, "CONSENT_REVOKED")
    with psycopg.connect(pair.url) as conn:  # the state both share is PostgreSQL's, not a file in the data folder
        row = conn.execute("SELECT revoked_us > 0 FROM passerelle_consent.consents WHERE id = %s", (consent_id,))
        assert row.fetchone() == (True,)
    assert not (pair.data_dir / "consents.db").exists()


async def test_a_one_exchange_consent_is_served_at_most_once_across_both_processes(pair: Pair) -> None:
    nid = taxpayers(pair)[1]
    async with httpx.AsyncClient(base_url=pair.a.base_url, timeout=10) as a, \
            httpx.AsyncClient(base_url=pair.b.base_url, timeout=10) as b:  # fmt: skip
        consent_id, _ = await grant(b, pair, nid, singleUse=True)
        answers = await asyncio.gather(*(fetch(client, pair, nid) for client in [a, b] * 8))
    assert sorted(answers) == [(200, "")] + [(403, "CONSENT_SPENT")] * 15
    with psycopg.connect(pair.url) as conn:  # one log: the one served exchange, whichever process served it
        served = conn.execute(
            "SELECT count(*) FROM passerelle_audit.audit_log WHERE consent_id = %s AND kind = 'exchange' "
            "AND outcome = 'ok'", (consent_id,)
        ).fetchone()
        spent = conn.execute("SELECT used_us > 0 FROM passerelle_consent.consents WHERE id = %s", (consent_id,))
        assert (served, spent.fetchone()) == ((1,), (True,))  # and the consent state is PostgreSQL's
    log = PostgresAuditLog(pair.url)
    await log.start()
    try:
        assert (await log.verify()).ok  # both processes appended to one gap-free chain
    finally:
        await log.close()


async def test_a_mandate_created_through_one_process_applies_on_the_other_within_one_second(pair: Pair) -> None:
    admin = {"authorization": f"Bearer {pair.token(issuer_id='demo-staff', subject='admin', scope='admin')}"}
    body = {"consumer": "sandbox", "service": "registry.population.v1.PopulationRegistry/GetPerson",
            "purposes": ["student-aid"], "legal_basis": "A6-1-e", "categories": ["NAME"]}  # fmt: skip
    agency = {"authorization": f"Bearer {pair.token(issuer_id='demo-agencies', subject='sandbox', scope='exchange')}",
              "x-purpose": "student-aid"}  # fmt: skip
    path = f"/v1/population/persons/{pair.data.persons[0].national_id}"
    async with httpx.AsyncClient(base_url=pair.a.base_url, timeout=10) as a, \
            httpx.AsyncClient(base_url=pair.b.base_url, timeout=10) as b:  # fmt: skip
        assert (await b.get(path, headers=agency)).status_code == 403
        assert (await a.put("/v1/admin/mandates/sandbox-pg", json=body, headers=admin)).status_code == 200
        await asyncio.sleep(GUARANTEE_S)
        assert (await b.get(path, headers=agency)).status_code == 200
        assert (await a.delete("/v1/admin/mandates/sandbox-pg", headers=admin)).status_code == 200
        await asyncio.sleep(GUARANTEE_S)
        refused = await b.get(path, headers=agency)
    assert (refused.status_code, refused.json()["reason"]) == (403, "NO_MANDATE")
