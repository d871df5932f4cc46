"""Two gateway processes sharing one SQLite data folder: a revocation (or a mandate edit) on one
holds on the other within 1 second (docs/consent.md: worst case 0.5 s for consents, 0.25 s for mandates)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from gateway.bootstrap import resolve_demo_addresses
from gateway.config import load_config
from gateway.demo.data import DemoData, generate
from gateway.demo.registries import start_grpc_registry, start_tax_registry
from gateway.demo.setup import demo_token, ensure_demo
from gateway.entrypoints.server import start_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")
ROOT = Path(__file__).resolve().parents[2]
GUARANTEE_S = 1.0


@dataclass
class Pair:
    data: DemoData
    data_dir: Path
    a: httpx.AsyncClient  # the gateway in this test process
    b: httpx.AsyncClient  # the gateway in a child process

    def token(self, **kw: str) -> str:
        return demo_token(self.data_dir, **kw)  # type: ignore[arg-type]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pair]:
    data = generate(20260101, persons=200)
    reg, grpc_port = await start_grpc_registry(data)
    tax, tax_port = await start_tax_registry(data)
    data_dir = tmp_path_factory.mktemp("shared")
    config = resolve_demo_addresses(load_config(ensure_demo(data_dir)), grpc_port, tax_port)
    running = await start_gateway(config, rest_port=0, grpc_port=0)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.gateway_process", str(data_dir), str(grpc_port), str(tax_port)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.to_thread(child.stdout.readline)
        assert line.startswith("READY"), f"child gateway failed to start: {line!r}"
        rest_b = int(dict(p.split("=") for p in line.split()[1:])["rest"])
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.rest_port}", timeout=10) as a,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{rest_b}", timeout=10) as b,
        ):
            yield Pair(data, data_dir, a, b)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        await running.stop(1.0)
        await reg.stop(0)
        await tax.stop()


async def fetch(client: httpx.AsyncClient, pair: Pair, nid: str) -> tuple[int, str]:
    headers = {
        "authorization": f"Bearer {pair.token(issuer_id='demo-agencies', subject='cedies', scope='exchange')}",
        "x-purpose": "student-aid",
    }
    r = await client.get(f"/v1/tax/income-certificates/{nid}/2024", headers=headers)
    return r.status_code, r.json().get("reason", "")


async def test_revocation_on_one_process_refuses_on_the_other_within_one_second(pair: Pair) -> None:
    nid = next(p.national_id for p in pair.data.persons if pair.data.income(p.national_id, 2024) is not None)
    citizen = {"authorization": f"Bearer {pair.token(issuer_id='demo-citizens', subject=nid, scope='citizen')}"}
    granted = await pair.a.post(
        "/v1/me/consents", headers=citizen, json={"consumer": "cedies", "purpose": "student-aid"}
    )
    assert granted.status_code == 200, granted.text
    assert await fetch(pair.b, pair, nid) == (200, "")  # B has now cached the live consent
    revoked = await pair.a.delete(f"/v1/me/consents/{granted.json()['id']}", headers=citizen)
    assert revoked.status_code == 200
    done = time.monotonic()
    assert await fetch(pair.a, pair, nid) == (403, "CONSENT_REVOKED")  # at once where it was taken
    seen_after = None
    while time.monotonic() - done < GUARANTEE_S:
        if await fetch(pair.b, pair, nid) == (403, "CONSENT_REVOKED"):
            seen_after = time.monotonic() - done
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(max(0.0, GUARANTEE_S - (time.monotonic() - done)))
    assert await fetch(pair.b, pair, nid) == (403, "CONSENT_REVOKED")
    print(f"revocation visible on the other process after {seen_after} s")


async def test_mandate_edit_on_one_process_applies_on_the_other_within_one_second(pair: Pair) -> None:
    admin = {"authorization": f"Bearer {pair.token(issuer_id='demo-staff', subject='admin', scope='admin')}"}
    body = {
        "consumer": "sandbox",
        "service": "registry.population.v1.PopulationRegistry/GetPerson",
        "purposes": ["student-aid"],
        "legal_basis": "A6-1-e",
        "categories": ["NAME"],
    }
    nid = pair.data.persons[0].national_id
    headers = {
        "authorization": f"Bearer {pair.token(issuer_id='demo-agencies', subject='sandbox', scope='exchange')}",
        "x-purpose": "student-aid",
    }
    assert (await pair.b.get(f"/v1/population/persons/{nid}", headers=headers)).status_code == 403
    assert (await pair.a.put("/v1/admin/mandates/sandbox-names", json=body, headers=admin)).status_code == 200
    await asyncio.sleep(GUARANTEE_S)
    assert (await pair.b.get(f"/v1/population/persons/{nid}", headers=headers)).status_code == 200
    assert (await pair.a.delete("/v1/admin/mandates/sandbox-names", headers=admin)).status_code == 200
    await asyncio.sleep(GUARANTEE_S)
    r = await pair.b.get(f"/v1/population/persons/{nid}", headers=headers)
    assert (r.status_code, r.json()["reason"]) == (403, "NO_MANDATE")
