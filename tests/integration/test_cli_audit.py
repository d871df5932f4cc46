"""``gateway audit verify | checkpoint | prove | check-proof | purge`` on a real SQLite log."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.stores.audit_sqlite import SqliteAuditLog
from gateway.demo.setup import ensure_demo
from gateway.entrypoints.cli import app
from tests.integration.test_audit_stores import T0, record

runner = CliRunner()


def audit(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", *args])
    return result.exit_code, result.output


def fill_log(data_dir: Path, n: int, *, start: int = 1, time_us: int | None = None) -> None:
    """Append ``n`` records written now (or at ``time_us``) to the demo folder's log."""
    base = time.time_ns() // 1000 if time_us is None else time_us

    async def fill() -> None:
        store = SqliteAuditLog(data_dir / "audit.db")
        await store.start()
        for i in range(start, start + n):
            await store.append(replace(record(i), time_us=base + i))
        await store.close()

    asyncio.run(fill())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A demo data folder whose log holds 12 records written just now."""
    ensure_demo(tmp_path)
    fill_log(tmp_path, 12)
    return tmp_path


def tamper(data_dir: Path, sql: str) -> None:
    conn = sqlite3.connect(data_dir / "audit.db", isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_log_append_only")
    conn.execute(sql)
    conn.close()


def test_verify_passes_on_an_untouched_log_and_counts_checkpoints(data_dir: Path) -> None:
    assert audit("checkpoint", "--data-dir", str(data_dir))[0] == 0
    code, out = audit("verify", "--data-dir", str(data_dir))
    assert code == 0, out
    assert "12 records verified" in out and "all 1 signed checkpoints match" in out


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("UPDATE audit_log SET consumer = 'police' WHERE seq = 7", "record 7: altered"),
        ("DELETE FROM audit_log WHERE seq = 7", "record 7: deleted"),
    ],
    ids=["altered", "deleted"],
)
def test_verify_fails_and_names_the_tampered_record(data_dir: Path, sql: str, named: str) -> None:
    tamper(data_dir, sql)
    code, out = audit("verify", "--data-dir", str(data_dir))
    assert code == 1
    assert named in out and "the chain holds up to seq 6; no signed checkpoint matches" in out


def test_verify_catches_a_rewritten_tail_against_the_signed_checkpoint(data_dir: Path) -> None:
    audit("checkpoint", "--data-dir", str(data_dir))
    tamper(data_dir, "DELETE FROM audit_log WHERE seq = 12")
    tamper(data_dir, "UPDATE audit_head SET seq = 11, hash = (SELECT hash FROM audit_log WHERE seq = 11)")
    code, out = audit("verify", "--data-dir", str(data_dir))
    assert code == 1 and "record 12: truncated" in out


def test_prove_writes_a_proof_that_checks_offline_and_fails_once_altered(data_dir: Path, tmp_path: Path) -> None:
    code, out = audit("prove", "5", "--data-dir", str(data_dir))
    assert code == 1 and "not in the latest signed checkpoint" in out
    audit("checkpoint", "--data-dir", str(data_dir))
    proof_file = tmp_path / "proof.json"
    code, out = audit("prove", "5", "--data-dir", str(data_dir), "-o", str(proof_file))
    assert code == 0, out
    code, out = audit("check-proof", str(proof_file))
    assert code == 0 and "OK: record 5 is in the checkpoint of tree size 12" in out
    proof = json.loads(proof_file.read_text())
    proof["canonical"] = proof["canonical"].replace("caf", "tax")
    proof_file.write_text(json.dumps(proof))
    code, out = audit("check-proof", str(proof_file))
    assert code == 1 and "does not hash to record_hash" in out


def test_check_proof_with_a_pinned_key_refuses_another_key(data_dir: Path, tmp_path: Path) -> None:
    audit("checkpoint", "--data-dir", str(data_dir))
    proof_file = tmp_path / "proof.json"
    audit("prove", "3", "--data-dir", str(data_dir), "-o", str(proof_file))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate().public_key()
    pem = tmp_path / "pinned.pem"
    pem.write_bytes(other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    code, out = audit("check-proof", str(proof_file), "--public-key", str(pem))
    assert code == 1 and "signature is not valid" in out


def test_purge_keeps_the_log_verifiable(tmp_path: Path) -> None:
    config = ensure_demo(tmp_path)
    config.write_text(config.read_text().replace("[gateway]\n", "[gateway]\naudit_retention_days = 30\n", 1))
    fill_log(tmp_path, 12, time_us=T0)   # from 2025: a one-day retention purges them all
    code, out = audit("purge", "--data-dir", str(tmp_path), "--older-than-days", "1")
    assert code == 0 and "purged 12 records" in out
    code, out = audit("verify", "--data-dir", str(tmp_path))
    assert code == 0 and "records before 13 were purged" in out, out
