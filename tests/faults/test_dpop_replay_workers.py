"""Two worker processes share one DPoP replay window: a proof is accepted once, whichever worker gets it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.dpop import key_thumbprint, make_proof
from gateway.demo.data import generate
from gateway.demo.registries import start_grpc_registry, start_tax_registry
from gateway.demo.setup import demo_token
from tests.faults.conftest import SEED, free_port, write_config

SENDS = 30


def workers_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


async def send(rest_port: int, path: str, headers: dict[str, str]) -> tuple[int, str]:
    # A fresh connection per call, so that the kernel hands calls to both workers.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rest_port}", timeout=10) as client:
        r = await client.get(path, headers=headers)
    return r.status_code, r.json().get("reason", "") if r.status_code != 200 else ""


async def test_the_same_proof_sent_to_two_workers_is_accepted_exactly_once(tmp_path: Path) -> None:
    data = generate(SEED, persons=50)
    reg, grpc_port = await start_grpc_registry(data)
    tax, tax_port = await start_tax_registry(data)
    config = write_config(tmp_path, grpc_port, tax_port)
    rest_port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.entrypoints.cli", "serve", "--config", str(config), "--workers", "2",
         "--rest-port", str(rest_port), "--grpc-port", "0"],
        stdout=log, stderr=log, env={**os.environ, "PASSERELLE_LOG_LEVEL": "WARNING"},
    )
    key = ec.generate_private_key(ec.SECP256R1())
    token = demo_token(tmp_path, issuer_id="demo-agencies", subject="cedies", scope="exchange",
                       extra={"cnf": {"jkt": key_thumbprint(key)}})
    path = f"/v1/population/persons/{data.persons[0].national_id}"
    try:
        deadline = time.monotonic() + 60
        while (tmp_path / "serve.log").read_text().count("Passerelle ready: ") < 2:
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
            await asyncio.sleep(0.1)
        assert len(workers_of(proc.pid)) == 2
        proof = make_proof(key, "GET", f"http://127.0.0.1:{rest_port}{path}", token)
        headers = {"authorization": f"DPoP {token}", "dpop": proof, "x-purpose": "student-aid"}
        answers = await asyncio.gather(*(send(rest_port, path, headers) for _ in range(SENDS)))
        fresh = make_proof(key, "GET", f"http://127.0.0.1:{rest_port}{path}", token)
        again = await send(rest_port, path, {**headers, "dpop": fresh})
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log.close()
        await reg.stop(0)
        await tax.stop()
    assert sorted(answers).count((200, "")) == 1, answers
    assert set(answers) == {(200, ""), (401, "DPOP_PROOF_INVALID")}, answers
    assert again == (200, ""), "a new proof is served"
