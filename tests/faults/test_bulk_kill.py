"""kill -9 of a real gateway process in the middle of a REST bulk look-up (issue 16): after a restart on the
same data folder the log verifies, and every item the client received has its audit record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from adapters.stores.audit_sqlite import SqliteAuditLog
from gateway.core.ports import AuditQuery
from gateway.core.pseudonym import Pseudonymiser
from gateway.core.types import SubjectRole
from gateway.demo.data import generate
from tests.gateway_process import REPO, SEED, agency_headers, demo_registries, start_gateway_process, write_config

GET_PERSON = "registry.population.v1.PopulationRegistry/GetPerson"
ITEMS = 3_000
READ_BEFORE_KILL = 200
REQUEST_ID = "bulk-kill-9"


async def test_kill_9_mid_bulk_call_leaves_a_verifiable_log_with_every_received_item_recorded(tmp_path: Path) -> None:
    ids = [p.national_id for p in generate(SEED, persons=ITEMS).persons[:ITEMS]]
    assert len(set(ids)) == ITEMS
    body = {"method": GET_PERSON, "items": [{"nationalId": n} for n in ids]}
    received: list[dict[str, Any]] = []
    with demo_registries(persons=ITEMS) as (grpc_port, tax_port):
        # The default checkpoint interval (60 s): `audit verify` flags records left unsigned for more than
        # 3 intervals as the gateway having been down, which a shorter interval would make this kill.
        config = write_config(tmp_path, grpc_port, tax_port)
        first = start_gateway_process(["--config", str(config)], tmp_path / "first.log")
        try:
            headers = agency_headers(tmp_path, REQUEST_ID)
            async with httpx.AsyncClient(base_url=first.base_url, timeout=20) as client, \
                    client.stream("POST", "/v1/bulk:lookup", json=body, headers=headers) as r:  # fmt: skip
                assert r.status_code == 200, await r.aread()
                async for line in r.aiter_lines():
                    if line:
                        received.append(json.loads(line))
                    if len(received) == READ_BEFORE_KILL:
                        first.kill()   # kill -9: no drain, no flush
                        break
        finally:
            if first.proc.poll() is None:
                first.kill()
        assert first.proc.returncode == -9
        second = start_gateway_process(["--config", str(config)], tmp_path / "second.log")
        assert second.stop() == 0   # the restarted gateway signs the head it found

    assert len(received) == READ_BEFORE_KILL
    assert all("index" in item for item in received), [i for i in received if "index" not in i][:1]
    pseudonym = Pseudonymiser((tmp_path / "keys" / "pseudonym.key").read_bytes())
    want = {pseudonym(ids[item["index"]]) for item in received}

    store = SqliteAuditLog(tmp_path / "audit.db")   # read only: query and verify
    await store.start()
    try:
        records = [s.record for s in await store.query(AuditQuery(limit=100_000))]
        result = await store.verify()
    finally:
        await store.close()
    assert result.ok, result
    lookups = [r for r in records if r.request_id == REQUEST_ID and r.subject_role == SubjectRole.DATA_SUBJECT]
    subjects = [r.subject for r in lookups]
    assert len(subjects) == len(set(subjects)), "an item recorded twice"
    assert want <= set(subjects), f"received but not recorded: {len(want - set(subjects))} items"
    assert READ_BEFORE_KILL <= len(lookups) < ITEMS   # records for what was answered (and buffered), not the rest
    assert all(r.extra.get("bulk") == "1" for r in lookups)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cli = subprocess.run([sys.executable, "-m", "gateway.entrypoints.cli", "audit", "verify", "--config", str(config)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr
