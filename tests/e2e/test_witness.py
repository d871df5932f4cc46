"""A gateway and a witness as separate processes: cosigning, a gateway restart, and a rewritten log refused."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.keys.file_signer import FileNoteSigner, generate_ed25519_pem
from gateway.core.signed_note import COSIGNATURE_TYPE, vkey
from gateway.demo.setup import ensure_demo
from tests.integration.test_tamper_cli import rewrite_without

WITNESS = "witness.test/w1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway.entrypoints.cli", *args]


def _wait(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Processes:
    def __init__(self, tmp: Path) -> None:
        self.tmp, self.rest = tmp, _free_port()
        self.data = tmp / "gateway"
        config = ensure_demo(self.data)
        key_file = tmp / "witness" / "key.pem"
        key_file.parent.mkdir()
        key_file.write_bytes(generate_ed25519_pem())
        self.key_file = key_file
        wkey = FileNoteSigner.from_file(WITNESS, key_file)
        self.witness_port = _free_port()
        self.witness_url = f"http://127.0.0.1:{self.witness_port}"
        text = config.read_text().replace("[gateway]\n", "[gateway]\ncheckpoint_interval_s = 0.3\n"
                                          "witness_poll_s = 0.3\n", 1)  # fmt: skip
        text += (f'\n[[witnesses]]\nname = "{WITNESS}"\nurl = "{self.witness_url}"\n'
                 f'public_key = "{vkey(WITNESS, wkey.public_key, COSIGNATURE_TYPE)}"\n')  # fmt: skip
        config.write_text(text)
        self.gateway: subprocess.Popen[str] | None = None
        self.witness: subprocess.Popen[bytes] | None = None
        self.witness_started = False

    def start_gateway(self) -> None:
        cmd = _cli("serve", "--demo", "--data-dir", str(self.data), "--persons", "200",
                   "--rest-port", str(self.rest), "--grpc-port", "0")  # fmt: skip
        self.gateway = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self.gateway.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (line := self.gateway.stderr.readline()):
            if "Passerelle ready" in line:
                return
        raise AssertionError("the gateway did not start")

    def stop_gateway(self) -> None:
        assert self.gateway is not None
        self.gateway.send_signal(signal.SIGTERM)
        self.gateway.communicate(timeout=30)
        self.gateway = None

    def start_witness(self) -> None:
        cmd = _cli("audit", "witness", "--gateway", f"http://127.0.0.1:{self.rest}", "--key", str(self.key_file),
                   "--state", str(self.tmp / "witness" / "state"), "--port", str(self.witness_port),
                   "--name", WITNESS, "--poll-s", "0.3", *(() if self.witness_started else ("--init",)))  # fmt: skip
        self.witness_started = True
        self.witness = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ)
        _wait("the witness", lambda: httpx.get(f"{self.witness_url}/status").status_code == 200)

    def exchange(self) -> None:
        token = subprocess.check_output(_cli("token", "--consumer", "cedies", "--data-dir", str(self.data)),
                                        text=True).strip()  # fmt: skip
        answer = httpx.get(f"http://127.0.0.1:{self.rest}/v1/population/persons/1991062434054",
                           headers={"Authorization": f"Bearer {token}", "x-purpose": "student-aid"})  # fmt: skip
        assert answer.status_code == 200, answer.text

    def status(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.witness_url}/status").json())

    def cosigned_size(self) -> int:
        accepted = self.status()["accepted"]
        return int(accepted["tree_size"]) if accepted else 0

    def head(self) -> int:
        conn = sqlite3.connect(self.data / "audit.db")
        try:
            return int(conn.execute("SELECT seq FROM audit_head").fetchone()[0])
        finally:
            conn.close()

    def close(self) -> None:
        for proc in (self.gateway, self.witness):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


def _checkpoint_rows(data: Path) -> int:
    conn = sqlite3.connect(data / "audit.db")
    try:
        return int(conn.execute("SELECT count(*) FROM audit_checkpoint").fetchone()[0])
    finally:
        conn.close()


def _sign_as_key_holder(data: Path) -> None:
    """Sign the log as it is with the real key, bypassing the gateway's checks (the key holder's attack)."""
    import asyncio

    from adapters.stores.audit_signing import sign_checkpoint
    from adapters.stores.audit_sqlite import SqliteAuditLog
    from gateway.core.merkle import Checkpoint

    async def sign() -> None:
        store = SqliteAuditLog(data / "audit.db")
        await store.start()
        size, root = await store.tree_head()
        key = FileNoteSigner.from_file("passerelle.demo/audit", data / "demo-signing-keys" / "checkpoint-ed25519.pem")
        await store.add_checkpoint(sign_checkpoint(Checkpoint(size, root, time.time_ns() // 1000), key))
        await store.close()

    asyncio.run(sign())


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(tmp_path)
    try:
        yield p
    finally:
        p.close()


def test_a_witness_cosigns_survives_a_gateway_restart_and_refuses_a_rewritten_log(procs: Processes) -> None:
    procs.start_gateway()
    procs.start_witness()
    procs.exchange()
    size = _wait("a cosignature", lambda: procs.cosigned_size() >= procs.head() > 0 and procs.cosigned_size())
    rest = f"http://127.0.0.1:{procs.rest}"
    served = _wait("the gateway serving the cosignature", lambda: [
        c for c in httpx.get(f"{rest}/v1/audit/checkpoints").json()["latest"].get("cosignatures", [])
        if c["witness"] == WITNESS])  # fmt: skip
    assert served and WITNESS in httpx.get(f"{rest}/v1/audit/checkpoint").text

    procs.stop_gateway()          # the witness goes on polling an absent gateway ...
    time.sleep(1.0)
    procs.start_gateway()         # ... and picks up where it was
    procs.exchange()
    grown = _wait("a cosignature after the restart", lambda: procs.cosigned_size() > size and procs.cosigned_size())
    assert procs.status()["refusal"] is None

    trusted = f"{procs.witness_url}/checkpoint"
    wkey = procs.status()["vkey"]
    ok = subprocess.run(_cli("audit", "verify", "--data-dir", str(procs.data), "--trusted", trusted,
                             "--witness-key", f"{WITNESS}={wkey}", "--min-cosignatures", "1"),
                        capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr

    procs.stop_gateway()
    rewrite_without(procs.data, 2)  # the database administrator's rewrite, checkpoints deleted
    procs.start_gateway()
    procs.exchange()
    procs.exchange()
    time.sleep(1.5)                 # five checkpoint intervals: the gateway refuses to sign the rewritten log
    assert _checkpoint_rows(procs.data) == 0 and procs.status()["refusal"] is None
    _sign_as_key_holder(procs.data)  # whoever holds the key signs it anyway: the witness is the defence
    refusal = _wait("the witness's refusal", lambda: procs.status()["refusal"])
    assert refusal["verdict"] in ("fork", "rollback"), refusal
    assert procs.cosigned_size() == grown   # its published cosignature stays on the last good tree
    bad = subprocess.run(_cli("audit", "verify", "--data-dir", str(procs.data), "--trusted", trusted),
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert bad.returncode == 1 and "FAILED" in bad.stdout, bad.stdout + bad.stderr
