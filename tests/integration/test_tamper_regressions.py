"""The issue-10 attack review's findings, as the database administrator reproduced them, each refused for good.

The administrator holds ``audit.db`` (not the key custodian's files): they delete records,
rechain with the project's canonical form, rewrite record times, drop checkpoint and
cosignature rows (``tests.integration.dba``). The signer must refuse to sign such a log,
whatever it finds in the database; ``verify`` must fail on it, and say what it cannot see.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from adapters.keys.file_signer import FileNoteSigner, generate_ed25519_pem
from adapters.stores.audit_checkpoints import SignerStateMissing, StoreCheckpointSigner, TamperedLog
from adapters.stores.audit_signer_state import SignerStateFile
from adapters.stores.audit_sqlite import SqliteAuditLog
from gateway.core.merkle import Checkpoint
from gateway.core.signed_note import vkey
from gateway.entrypoints.witness import StateError, StateFile, Witness, witness_app
from tests.integration.dba import rewrite_copy, rewrite_in_place
from tests.integration.test_cli_audit import audit, data_dir, fill_log  # noqa: F401  (fixture)

ORIGIN = "passerelle.demo/audit"
T = TypeVar("T")


def key_of(folder: Path) -> FileNoteSigner:
    return FileNoteSigner.from_file(ORIGIN, folder / "demo-signing-keys" / "checkpoint-ed25519.pem")


def state_file(folder: Path) -> Path:
    return folder / "demo-signing-keys" / "checkpoint-signer-state.json"


def published_key(folder: Path) -> str:
    key = key_of(folder)
    return vkey(key.name, key.public_key)


def signer(
    folder: Path, store: SqliteAuditLog, witnessed: list[tuple[str, Checkpoint]] | None = None
) -> StoreCheckpointSigner:
    async def fetch() -> list[tuple[str, Checkpoint]]:
        return witnessed or []

    return StoreCheckpointSigner(store, key_of(folder), clock_us=lambda: 1, state=SignerStateFile(state_file(folder)),
                            witnessed=fetch if witnessed is not None else None)  # fmt: skip


def on_store(folder: Path, work: Callable[[SqliteAuditLog], Awaitable[T]]) -> T:
    async def run() -> T:
        store = SqliteAuditLog(folder / "audit.db")
        await store.start()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


@pytest.fixture
def signed(data_dir: Path) -> Path:  # noqa: F811
    """The demo folder, its 12 records covered by a checkpoint the signer remembers outside the database."""
    assert audit("checkpoint", "--data-dir", str(data_dir))[0] == 0
    return data_dir


def test_the_signer_refuses_a_log_rewritten_with_its_checkpoints_and_cosignatures_dropped(
    signed: Path, tmp_path: Path
) -> None:
    """Finding 1: delete, rechain, retime, drop checkpoints: no checkpoint is signed on restart, and verify fails."""
    copy = tmp_path / "t4"
    rewrite_copy(signed, copy, delete=[5], retime=True, drop_checkpoints=True, drop_cosignatures=True)
    with pytest.raises(TamperedLog, match="records were removed"):
        on_store(copy, lambda store: signer(copy, store).prepare())
    fill_log(copy, 3, start=20)  # the gateway keeps recording: the log is larger than what was signed again
    with pytest.raises(TamperedLog, match="no longer hash to the root signed"):
        on_store(copy, lambda store: signer(copy, store).checkpoint())
    code, out = audit("checkpoint", "--data-dir", str(copy))
    assert code == 1 and "REFUSED" in out, out
    code, out = audit("verify", "--data-dir", str(copy), "--public-key", published_key(signed))
    assert code == 1 and "no signed checkpoint at all" in out and "signer's own state" in out, out


def test_the_signer_refuses_a_log_smaller_than_a_checkpoint_in_its_own_table(signed: Path) -> None:
    """Finding 2: a log that shrank below its latest stored checkpoint is refused, not "nothing to sign"."""
    state_file(signed).unlink()  # even without its own state: the table's checkpoint is signed evidence
    rewrite_in_place(signed, delete=[5])
    with pytest.raises(TamperedLog, match="11 records but a checkpoint of 12"):
        on_store(signed, lambda store: signer(signed, store).checkpoint(reanchor="lost the state"))


def test_the_signer_refuses_a_grown_log_that_does_not_extend_its_latest_checkpoint(signed: Path) -> None:
    """Finding 2: size 13 after a rechained 11 + 2 new records is inconsistent with the signed 12: refused."""
    rewrite_in_place(signed, delete=[5])
    fill_log(signed, 2, start=30)
    with pytest.raises(TamperedLog, match="no longer hash"):
        on_store(signed, lambda store: signer(signed, store).checkpoint())


def test_the_signer_refuses_a_log_that_contradicts_a_witness_even_with_every_local_trace_gone(
    signed: Path, tmp_path: Path
) -> None:
    """The witnesses' cosigned checkpoints (URLs from the configuration) are references too."""
    witnessed = on_store(signed, lambda store: store.latest_checkpoint())
    assert witnessed is not None
    copy = tmp_path / "copy"
    rewrite_copy(signed, copy, delete=[3], drop_checkpoints=True)
    state_file(copy).unlink()
    fill_log(copy, 2, start=40)

    async def reanchor(store: SqliteAuditLog) -> object:
        return await signer(copy, store, [("w1", witnessed)]).checkpoint(reanchor="state lost")

    with pytest.raises(TamperedLog, match="witness w1"):
        on_store(copy, reanchor)


def test_a_missing_signer_state_blocks_signing_until_an_operator_reanchors_with_a_reason(signed: Path) -> None:
    fill_log(signed, 2, start=50)
    state_file(signed).unlink()
    with pytest.raises(SignerStateMissing):
        on_store(signed, lambda store: signer(signed, store).checkpoint())
    assert audit("checkpoint", "--data-dir", str(signed))[0] == 1
    assert audit("checkpoint", "--data-dir", str(signed), "--reanchor", " ")[0] == 2
    code, out = audit("checkpoint", "--data-dir", str(signed), "--reanchor", "restored the custodian's disk")
    assert code == 0 and "RE-ANCHORED" in out and "tree size 15" in out, out  # 14 + the re-anchoring record
    state = json.loads(state_file(signed).read_text())
    assert [r["reason"] for r in state["reanchors"]] == ["restored the custodian's disk"]
    conn = sqlite3.connect(signed / "audit.db")
    assert conn.execute("SELECT service FROM audit_log WHERE seq = 15").fetchone() == ("gateway.audit/Reanchor",)
    conn.close()
    code, out = audit("checkpoint", "--data-dir", str(signed), "--reanchor", "again")
    assert code == 1 and "nothing to re-anchor" in out, out


def test_an_edited_signer_state_is_refused(signed: Path) -> None:
    state = json.loads(state_file(signed).read_text())
    state["note"] = state["note"].replace("\n12\n", "\n11\n")
    state_file(signed).write_text(json.dumps(state))
    fill_log(signed, 1, start=60)
    code, out = audit("checkpoint", "--data-dir", str(signed))
    assert code == 1 and "not signed by this signer's key" in out, out


def test_verify_without_trusted_fails_on_a_rechained_log_whose_checkpoints_were_dropped(
    signed: Path, tmp_path: Path
) -> None:
    """Finding 3 (the issue's reproduction 1), even for an auditor who cannot read the signer's state."""
    copy = tmp_path / "copy"
    rewrite_copy(signed, copy, delete=[5], retime=True, drop_checkpoints=True)
    state_file(copy).unlink()
    code, out = audit("verify", "--data-dir", str(copy))
    assert code == 1 and "no signed checkpoint at all" in out, out


def test_verify_says_what_it_cannot_detect_without_a_trusted_checkpoint(signed: Path) -> None:
    code, out = audit("verify", "--data-dir", str(signed))
    assert code == 0 and "NOT CHECKED without --trusted" in out and "re-sign" in out, out


def test_verify_points_to_the_last_matching_checkpoint_after_a_deletion_before_a_checkpoint(signed: Path) -> None:
    """Finding 7: a rechained deletion under a checkpoint: nothing is verified past the last checkpoint that held."""
    fill_log(signed, 5, start=70)
    assert audit("checkpoint", "--data-dir", str(signed))[0] == 0  # checkpoints at 12 and 17
    rewrite_in_place(signed, delete=[14])
    code, out = audit("verify", "--data-dir", str(signed))
    assert code == 1 and "record 16: truncated" not in out, out
    assert "the last signed checkpoint that matches covers records up to seq 12" in out, out


def test_min_cosignatures_needs_witness_keys_given_by_the_auditor(signed: Path) -> None:
    """Finding 8: the operator's gateway.toml is not a source of witness keys against that operator."""
    code, out = audit("verify", "--data-dir", str(signed), "--min-cosignatures", "1")
    assert code == 2 and "--witness-key" in out, out


def _witness(folder: Path, key: FileNoteSigner, *, init: bool = False) -> Witness:
    return Witness("http://gateway.test", key, StateFile(folder, key), init=init)


def test_a_witness_whose_state_was_deleted_refuses_to_start_without_init(tmp_path: Path) -> None:
    """Finding 4: a witness that silently forgot what it cosigned would cosign a fork."""
    key = FileNoteSigner("witness.example/w1", generate_ed25519_pem())
    first = _witness(tmp_path, key, init=True)
    assert first.state.initialised_at > 0
    (tmp_path / "witness-state.json").unlink()
    with pytest.raises(StateError, match="give --init"):
        _witness(tmp_path, key)
    _witness(tmp_path / "again", key, init=True)
    with pytest.raises(StateError, match="refusing to forget"):   # --init never resets a state that exists
        _witness(tmp_path / "again", key, init=True)


def test_an_edited_witness_state_is_refused(tmp_path: Path) -> None:
    key = FileNoteSigner("witness.example/w1", generate_ed25519_pem())
    _witness(tmp_path, key, init=True)
    doc = json.loads((tmp_path / "witness-state.json").read_text())
    doc["state"]["refusal"] = None
    doc["state"]["seen"] = {"origin": ORIGIN, "tree_size": 1, "root_hash": "", "note": ""}
    (tmp_path / "witness-state.json").write_text(json.dumps(doc))
    with pytest.raises(StateError, match="not signed by this witness's key"):
        _witness(tmp_path, key)


async def test_the_witness_status_says_when_it_was_initialised(tmp_path: Path) -> None:
    key = FileNoteSigner("witness.example/w1", generate_ed25519_pem())
    w = _witness(tmp_path, key, init=True)
    transport = httpx.ASGITransport(app=witness_app(w))
    async with httpx.AsyncClient(transport=transport, base_url="http://witness.test") as client:
        status = (await client.get("/status")).json()
    assert status["initialised_at"] == w.state.initialised_at > 0
