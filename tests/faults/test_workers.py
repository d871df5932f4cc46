"""Two worker processes sharing the ports; one is killed with SIGKILL under load."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from adapters.stores.audit_sqlite import SqliteAuditLog
from gateway.core.ports import AuditQuery
from gateway.core.types import Outcome
from gateway.demo.data import generate
from gateway.demo.registries import start_grpc_registry, start_tax_registry
from gateway.demo.setup import demo_token
from tests.faults.conftest import SEED, free_port, write_config


def workers_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


async def wait_for(condition, what: str, limit_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_killing_one_of_two_workers_loses_no_audited_answer_and_the_supervisor_replaces_it(
    tmp_path: Path,
) -> None:
    data = generate(SEED, persons=200)
    reg, grpc_port = await start_grpc_registry(data)
    tax, tax_port = await start_tax_registry(data)
    config = write_config(tmp_path, grpc_port, tax_port)
    rest_port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.entrypoints.cli",
            "serve",
            "--config",
            str(config),
            "--workers",
            "2",
            "--rest-port",
            str(rest_port),
            "--grpc-port",
            "0",
        ],
        stdout=log,
        stderr=log,
        env={**os.environ, "PASSERELLE_LOG_LEVEL": "WARNING"},
    )

    def ready() -> int:
        return (tmp_path / "serve.log").read_text().count("Passerelle ready: ")

    token = demo_token(tmp_path, issuer_id="demo-agencies", subject="cedies", scope="exchange")
    nid = data.persons[0].national_id
    seen: list[tuple[str, int]] = []  # (request id, status or -1 for a broken connection)
    try:
        await wait_for(lambda: ready() >= 2, "two workers")
        first = workers_of(proc.pid)
        assert len(first) == 2

        async def caller(n: int, stop: asyncio.Event) -> None:
            # A fresh connection per call, so the kernel spreads calls over both workers.
            i = 0
            while not stop.is_set():
                rid = f"w{n}-{i}"
                i += 1
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rest_port}", timeout=5) as client:
                    try:
                        r = await client.get(
                            f"/v1/population/persons/{nid}",
                            headers={
                                "authorization": f"Bearer {token}",
                                "x-purpose": "student-aid",
                                "x-request-id": rid,
                            },
                        )
                        seen.append((rid, r.status_code))
                    except httpx.TransportError:
                        seen.append((rid, -1))

        stop = asyncio.Event()
        callers = [asyncio.create_task(caller(n, stop)) for n in range(4)]
        await asyncio.sleep(1.0)
        os.kill(first[0], signal.SIGKILL)
        await wait_for(lambda: ready() >= 3, "the replacement worker")
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*callers)
        after_kill = [s for _, s in seen[-20:]]
        assert set(after_kill) == {200}, after_kill
        assert first[0] not in workers_of(proc.pid) and len(workers_of(proc.pid)) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log.close()
        await reg.stop(0)
        await tax.stop()
    assert {s for _, s in seen} <= {200, -1}, seen
    store = SqliteAuditLog(tmp_path / "audit.db")
    await store.start()
    try:
        records = {r.record.request_id: r.record for r in await store.query(AuditQuery(limit=100_000))}
        assert (await store.verify()).ok, "one chain across both workers"
    finally:
        await store.close()
    served = [rid for rid, s in seen if s == 200]
    assert served and all(records[rid].outcome is Outcome.OK for rid in served)
