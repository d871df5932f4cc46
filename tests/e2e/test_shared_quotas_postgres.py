"""Two gateway processes (``gateway serve``) on one PostgreSQL: one quota for both, revocations shared.

A burst from one consumer split over both processes is admitted about once the
global quota (burst 20, rate 0.1/s: about 20 calls, not 40), and a revocation
made through one process is enforced by the other within REVOCATION_S.
Counts only, no latency assertions.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import pytest_asyncio
from psycopg.conninfo import conninfo_to_dict

from gateway.demo.data import DemoData, generate
from gateway.demo.registries import start_grpc_registry, start_tax_registry
from gateway.demo.setup import demo_token
from tests.faults.conftest import SEED, write_config
from tests.integration.conftest import PG_DSN, require_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio(loop_scope="module")]
ROOT = Path(__file__).resolve().parents[2]
BURST, RATE = 20, 0.1
REVOCATION_S = 1.5  # poll every 1 s (gateway/bootstrap_security.py) plus the query


@dataclass
class Pair:
    data: DemoData
    data_dir: Path
    dsn: str
    a: httpx.AsyncClient
    b: httpx.AsyncClient

    def token(self, subject: str = "cedies") -> str:
        return demo_token(self.data_dir, issuer_id="demo-agencies", subject=subject, scope="exchange")


def _throwaway_database() -> tuple[str, str]:
    """A fresh database on the test server: (its name, its postgresql:// URL)."""
    name = f"passerelle_quota_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    p = conninfo_to_dict(PG_DSN)
    user = f"{p['user']}@" if p.get("user") else ""
    return name, f"postgresql://{user}{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{name}"


def _config(data_dir: Path, grpc_port: int, tax_port: int, dsn: str) -> Path:
    path = write_config(data_dir, grpc_port, tax_port, audit=dsn)
    text = path.read_text()
    for old, new in (
        ('revocations = "sqlite:revocations.db"', f'revocations = "{dsn}"'),
        ("rate_per_s = 1000\n", f"rate_per_s = {RATE}\n"),
        ("burst = 2000\n", f"burst = {BURST}\n"),
    ):
        assert text.count(old) == 1, f"demo configuration changed shape: {old!r}"
        text = text.replace(old, new)
    path.write_text(text)
    return path


async def _start(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.entrypoints.cli", "serve", "--config", str(config),
         "--rest-port", "0", "--grpc-port", "0"],
        cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
        env={**os.environ, "PASSERELLE_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (m := re.search(r"Passerelle ready: REST http://[\d.]+:(\d+)", log.read_text())):
        assert proc.poll() is None and time.monotonic() < deadline, f"gateway did not start: {log.read_text()}"
        await asyncio.sleep(0.1)
    return proc, int(m.group(1))


async def _wait_until_both_see_each_other(dsn: str) -> None:
    """Every live member has beaten since the last one joined, so each computed its share with N = 2."""
    sql = (
        "SELECT count(*), coalesce(bool_and(seen > (SELECT max(joined) FROM passerelle_quotas.quota_members)), "
        "false) FROM passerelle_quotas.quota_members WHERE seen > clock_timestamp() - interval '2.5 s'"
    )
    deadline = time.monotonic() + 10
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while True:
            row = await (await conn.execute(sql.encode())).fetchone()
            if row is not None and row[0] == 2 and row[1]:
                return
            assert time.monotonic() < deadline, f"the two gateways never met on the quota board: {row}"
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pair]:
    require_postgres()
    data = generate(SEED, persons=200)
    reg, grpc_port = await start_grpc_registry(data)
    tax, tax_port = await start_tax_registry(data)
    data_dir = tmp_path_factory.mktemp("pg-pair")
    name, dsn = _throwaway_database()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        config = _config(data_dir, grpc_port, tax_port, dsn)
        ports = []
        for n in ("a", "b"):
            proc, port = await _start(config, data_dir / f"{n}.log")
            procs.append(proc)
            ports.append(port)
        await _wait_until_both_see_each_other(dsn)
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[0]}", timeout=10) as a,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[1]}", timeout=10) as b,
        ):
            yield Pair(data, data_dir, dsn, a, b)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        await reg.stop(0)
        await tax.stop()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


async def test_a_burst_split_over_two_processes_is_admitted_once_not_twice(pair: Pair) -> None:
    headers = {"authorization": f"Bearer {pair.token()}", "x-purpose": "student-aid"}
    nid = pair.data.persons[0].national_id
    counts = {"a": {200: 0, 429: 0}, "b": {200: 0, 429: 0}}
    for i in range(3 * BURST):  # 30 calls to each process, alternating
        name, client = ("a", pair.a) if i % 2 == 0 else ("b", pair.b)
        r = await client.get(f"/v1/population/persons/{nid}", headers=headers)
        assert r.status_code in (200, 429), r.text
        if r.status_code == 429:
            assert r.json()["reason"] == "RATE_LIMITED" and int(r.headers["retry-after"]) >= 1
        counts[name][r.status_code] += 1
    admitted = counts["a"][200] + counts["b"][200]
    print(f"admitted per process: {counts}")
    # Alone, each process would admit its whole burst: 2 x 20 = 40. Shared: 20 (10 each), plus at most
    # 0.1/s of refill and one token of rounding per process.
    assert BURST - 4 <= admitted <= BURST + 2, counts
    assert counts["a"][429] and counts["b"][429], counts


async def test_a_revocation_through_one_process_is_enforced_by_the_other(pair: Pair) -> None:
    admin = {"authorization": "Bearer " + demo_token(pair.data_dir, issuer_id="demo-staff", subject="admin",
                                                     scope="admin")}  # fmt: skip
    sandbox = {"authorization": f"Bearer {pair.token('sandbox')}"}
    assert (await pair.b.get("/v1/catalogue", headers=sandbox)).status_code == 200  # B has cached the token
    r = await pair.a.post("/v1/admin/revocations", headers=admin,
                          json={"kind": "consumer", "value": "sandbox", "reason": "test"})  # fmt: skip
    assert r.status_code == 200, r.text
    done = time.monotonic()
    try:
        refused = await pair.a.get("/v1/catalogue", headers=sandbox)
        assert (refused.status_code, refused.json()["reason"]) == (401, "TOKEN_REVOKED")  # at once on A
        seen_after = None
        while time.monotonic() - done < REVOCATION_S:
            if (await pair.b.get("/v1/catalogue", headers=sandbox)).status_code == 401:
                seen_after = time.monotonic() - done
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(max(0.0, REVOCATION_S - (time.monotonic() - done)))
        r = await pair.b.get("/v1/catalogue", headers=sandbox)
        assert (r.status_code, r.json()["reason"]) == (401, "TOKEN_REVOKED")
        print(f"revocation enforced by the other process after {seen_after} s")
    finally:
        r = await pair.a.post("/v1/admin/revocations:reinstate", headers=admin,
                              json={"kind": "consumer", "value": "sandbox"})  # fmt: skip
    assert r.json() == {"removed": True}
    await asyncio.sleep(REVOCATION_S)
    assert (await pair.b.get("/v1/catalogue", headers=sandbox)).status_code == 200
