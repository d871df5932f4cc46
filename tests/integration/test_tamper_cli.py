"""Issue 10's reproduction, as the database administrator would do it, against `gateway audit verify`."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from adapters.stores._audit_common import chain_batch
from gateway.core.audit_chain import GENESIS_HASH, ROW_COLUMNS, stored_of
from tests.integration.test_cli_audit import audit, data_dir  # noqa: F401  (fixture)


def rewrite_without(folder: Path, seq: int) -> None:
    """Delete one record, rechain the rest with the project's canonical form, delete every checkpoint."""
    conn = sqlite3.connect(folder / "audit.db", isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_log_append_only")
    rows = conn.execute(f"SELECT {', '.join(ROW_COLUMNS)} FROM audit_log ORDER BY seq").fetchall()
    new = chain_batch(0, GENESIS_HASH, [stored_of(r).record for r in rows if r[0] != seq])
    conn.execute("DELETE FROM audit_log")
    conn.executemany(f"INSERT INTO audit_log VALUES ({', '.join('?' * len(ROW_COLUMNS))})", new)
    conn.execute("UPDATE audit_head SET seq = ?, hash = ?", (new[-1][0], new[-1][-1]))
    conn.execute("DELETE FROM audit_checkpoint")
    conn.close()


def test_a_rechained_copy_without_checkpoints_fails_against_the_checkpoint_a_citizen_kept(
    data_dir: Path, tmp_path: Path  # noqa: F811
) -> None:
    assert audit("checkpoint", "--data-dir", str(data_dir))[0] == 0
    kept = tmp_path / "kept-checkpoint.json"
    code, out = audit("prove", "5", "--data-dir", str(data_dir), "-o", str(kept))   # a proof holds the note
    assert code == 0, out
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    rewrite_without(copy, 7)
    code, out = audit("verify", "--data-dir", str(copy), "--trusted", str(kept))
    assert code == 1 and "FAILED: rollback: the log holds 11 records" in out, out
    some_witness = "witness.example/w=" + "A" * 43 + "="
    code, out = audit("verify", "--data-dir", str(copy), "--trusted", str(kept), "--min-cosignatures", "1",
                      "--witness-key", some_witness)  # fmt: skip
    assert code == 1 and "0 valid witness cosignature(s)" in out, out


def test_verify_names_an_unknown_trusted_key_as_a_replaced_log_key(data_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    audit("checkpoint", "--data-dir", str(data_dir))
    note = tmp_path / "note.txt"
    note.write_text("passerelle.demo/audit\n12\n" + "A" * 43 + "=\n\n\u2014 passerelle.demo/audit AAAAAAAA\n")
    code, out = audit("verify", "--data-dir", str(data_dir), "--trusted", str(note))
    assert code == 1 and "not signed by the pinned log key" in out, out
