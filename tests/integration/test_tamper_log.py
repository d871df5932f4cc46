"""The log against whoever holds its database: each attack, reproduced as the attacker would, is detected.

The attacker edits the tables directly (the append-only trigger dropped), rechains
with the project's own canonical form, deletes or re-signs checkpoints. Detection
comes from what the database does not hold: the pinned log key, a checkpoint kept
outside (``verify --trusted``), and a witness's memory. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from adapters.keys.file_signer import FileNoteSigner, generate_ed25519_pem
from adapters.stores._audit_common import chain_batch
from adapters.stores.audit_checkpoints import StoreCheckpointSigner
from adapters.stores.audit_postgres import PostgresAuditLog
from adapters.stores.audit_signing import sign_checkpoint
from adapters.stores.audit_sqlite import SqliteAuditLog
from adapters.stores.audit_verification import LogCheck, VerifyPolicy, check_log
from gateway.core.audit_chain import GENESIS_HASH, ROW_COLUMNS, Row, stored_of
from gateway.core.merkle import Checkpoint, checkpoint_note
from gateway.core.signed_note import Verifier
from gateway.core.witness import Verdict
from gateway.entrypoints.witness import StateFile, Witness
from tests.integration.conftest import PG_DSN, Harness, _pg_execute, _sqlite_execute
from tests.integration.test_audit_stores import record

ORIGIN = "passerelle.demo/audit"
SECOND = 1_000_000
NOW = time.time_ns() // 1000
START = NOW - 2 * 3600 * SECOND   # the honest history began two hours ago


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    if request.param == "sqlite":
        path = tmp_path / "audit.db"
        harness = Harness("sqlite", SqliteAuditLog(path), _sqlite_execute(path))
    else:
        schema = request.getfixturevalue("pg_schema")
        harness = Harness("postgres", PostgresAuditLog(PG_DSN, schema=schema), _pg_execute(schema),
                          table=f"{schema}.audit_log", placeholder="%s")  # fmt: skip
    await harness.store.start()
    yield harness
    await harness.store.close()


class Gateway:
    """The honest gateway: records written five seconds apart, a checkpoint signed right after each batch."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.key = FileNoteSigner(ORIGIN, generate_ed25519_pem())
        self.clock = START
        self.signer = StoreCheckpointSigner(h.store, self.key, clock_us=lambda: self.clock)
        self.n = 0

    async def write(self, count: int) -> None:
        for _ in range(count):
            self.n += 1
            self.clock += 5 * SECOND
            await self.h.store.append(replace(record(self.n), time_us=self.clock))

    async def checkpoint(self) -> str:
        """Sign now and return the note a citizen (or a witness) keeps."""
        self.clock += 10 * SECOND
        cp = await self.signer.checkpoint()
        assert cp is not None
        return checkpoint_note(cp).format()

    @property
    def pinned(self) -> Verifier:
        return Verifier(ORIGIN, 1, self.key.public_key)


def table(h: Harness, name: str) -> str:
    return h.table.removesuffix("audit_log") + name


def rechain(h: Harness, rows: list[Row]) -> None:
    """The attacker's rewrite: these records, renumbered from 1 and chained with the canonical form."""
    new = chain_batch(0, GENESIS_HASH, [stored_of(r).record for r in rows])
    h.execute(h.sql("DELETE FROM {t}"), ())
    marks = ", ".join([h.placeholder] * len(ROW_COLUMNS))
    for row in new:
        h.execute(h.sql(f"INSERT INTO {{t}} ({', '.join(ROW_COLUMNS)}) VALUES ({marks})"), row)
    head = new[-1] if new else (0, GENESIS_HASH)
    h.execute(h.sql(f"UPDATE {table(h, 'audit_head')} SET seq = ?, hash = ?"), (head[0], head[-1]))


def drop_checkpoints(h: Harness, above: int = -1) -> None:
    h.execute(h.sql(f"DELETE FROM {table(h, 'audit_checkpoint')} WHERE tree_size > ?"), (above,))


async def resign(h: Harness, key: FileNoteSigner, clock_us: int) -> None:
    """Replace every checkpoint by one of the rewritten log, signed with ``key``."""
    drop_checkpoints(h)
    size, head_root = await h.store.tree_head()
    await h.store.add_checkpoint(sign_checkpoint(Checkpoint(size, head_root, clock_us), key))


async def verify(
    h: Harness, gw: Gateway, trusted: tuple[str, ...] = (), retention_days: int = 0, later_s: int = 30
) -> LogCheck:
    policy = VerifyPolicy(now_us=gw.clock + later_s * SECOND, interval_s=60, retention_days=retention_days)
    return await check_log(h.store, gw.pinned, policy, trusted)


def failures(check: LogCheck) -> str:
    return " | ".join([*check.findings, "" if check.result.ok else f"{check.result.tamper}: {check.result.detail}"])


async def test_an_honest_log_passes_with_and_without_a_trusted_checkpoint(h: Harness) -> None:
    gw = Gateway(h)
    await gw.write(10)
    kept = await gw.checkpoint()
    await gw.write(5)
    await gw.checkpoint()
    assert (await verify(h, gw)).ok
    assert (await verify(h, gw, (kept,))).ok


async def test_rechained_log_with_its_checkpoints_deleted_is_caught(h: Harness) -> None:
    gw = Gateway(h)
    await gw.write(10)
    kept = await gw.checkpoint()
    await gw.write(5)
    await gw.checkpoint()
    rechain(h, [r for r in h.rows() if r[0] != 4])   # record 4 disappears, the chain is whole again
    drop_checkpoints(h)
    check = await verify(h, gw, later_s=3600)         # an auditor checks an hour later
    assert check.result.ok and not check.ok           # the chain alone looks fine ...
    assert "no signed checkpoint at all" in failures(check)   # ... but nothing signed it, whatever the times say
    assert "rewrite" in failures(await verify(h, gw, (kept,)))


async def test_dropping_records_a_checkpoint_covered_is_a_rollback(h: Harness) -> None:
    gw = Gateway(h)
    await gw.write(10)
    await gw.checkpoint()
    await gw.write(5)
    kept = await gw.checkpoint()
    rows = h.rows()
    for seq in range(13, 16):
        h.delete(seq)
    h.execute(h.sql(f"UPDATE {table(h, 'audit_head')} SET seq = ?, hash = ?"), (12, rows[11][-1]))
    drop_checkpoints(h, above=12)
    assert "rollback: the log holds 12 records but the trusted checkpoint" in failures(await verify(h, gw, (kept,)))


async def test_a_retention_anchor_planted_while_retention_is_off_is_caught(h: Harness) -> None:
    gw = Gateway(h)
    await gw.write(10)
    await gw.checkpoint()
    await h.store.purge_before(START + 6 * 5 * SECOND)   # the attacker "purges" records 1..5
    assert "purged although retention is off" in failures(await verify(h, gw))


async def test_a_planted_anchor_hiding_an_edit_disagrees_with_the_signed_root(h: Harness) -> None:
    gw = Gateway(h)
    await gw.write(10)
    kept = await gw.checkpoint()
    h.alter_subject(3, "someone-else")
    rechain(h, h.rows())
    await h.store.purge_before(START + 6 * 5 * SECOND)   # hide the edited record behind an anchor
    check = await verify(h, gw, (kept,), retention_days=1)
    assert not check.ok and "do not hash to the signed root" in failures(check)


async def test_a_planted_anchor_without_checkpoints_is_caught(h: Harness) -> None:
    gw = Gateway(h)
    await gw.write(10)
    await gw.checkpoint()
    await h.store.purge_before(START + 6 * 5 * SECOND)
    drop_checkpoints(h)
    assert "the retention anchor at seq 5 is covered by no signed checkpoint" in failures(
        await verify(h, gw, retention_days=1))


async def test_a_log_re_signed_with_another_key_fails_under_the_pinned_key(h: Harness) -> None:
    gw = Gateway(h)
    await gw.write(10)
    kept = await gw.checkpoint()
    h.alter_subject(3, "someone-else")
    rechain(h, h.rows())
    await resign(h, FileNoteSigner(ORIGIN, generate_ed25519_pem()), gw.clock)
    check = await verify(h, gw)
    assert not check.result.ok and check.result.detail == "bad signature"
    assert not (await verify(h, gw, (kept,))).ok


async def test_a_log_re_signed_with_the_real_key_is_caught_by_the_trusted_checkpoint(h: Harness) -> None:
    """Root on the host (or the key holder) can re-sign; a checkpoint kept outside still disagrees."""
    gw = Gateway(h)
    await gw.write(10)
    kept = await gw.checkpoint()
    h.alter_subject(3, "someone-else")
    rechain(h, h.rows())
    await resign(h, gw.key, gw.clock)
    assert (await verify(h, gw)).ok                      # self-consistent, signed by the real key ...
    assert "rewrite" in failures(await verify(h, gw, (kept,)))  # ... but not the history the citizen kept


# --- the witness ------------------------------------------------------------------------------------


def serve(h: Harness, gw: Gateway) -> httpx.AsyncClient:
    """The gateway's two public endpoints the witness uses, answered from the (possibly tampered) store."""

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/audit/checkpoints":
            latest = await h.store.latest_checkpoint()
            return httpx.Response(200, json={"latest": {"note": checkpoint_note(latest).format()}})
        old, new = int(request.url.params["from"]), int(request.url.params["to"])
        hashes = await h.store.consistency_proof(old, new)
        return httpx.Response(200, json={"hashes": [base64.b64encode(x).decode() for x in hashes]})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://gateway.test")


def witness(tmp_path: Path, gw: Gateway) -> Witness:
    from gateway.core.signed_note import vkey

    key = FileNoteSigner("witness.example/w1", generate_ed25519_pem())
    return Witness("http://gateway.test", key, StateFile(tmp_path / "witness", key),
                   log_vkey=vkey(ORIGIN, gw.key.public_key), init=True)  # fmt: skip


async def test_a_witness_cosigns_a_growing_log(h: Harness, tmp_path: Path) -> None:
    gw = Gateway(h)
    await gw.write(10)
    await gw.checkpoint()
    w = witness(tmp_path, gw)
    async with serve(h, gw) as client:
        assert await w.poll_once(client) == "cosigned tree size 10"
        await gw.write(7)
        await gw.checkpoint()
        assert await w.poll_once(client) == "cosigned tree size 17"
    assert w.state.refusal is None and "witness.example/w1" in w.state.cosigned


async def test_a_fork_shown_to_a_witness_is_refused_for_good(h: Harness, tmp_path: Path) -> None:
    gw = Gateway(h)
    await gw.write(10)
    await gw.checkpoint()
    w = witness(tmp_path, gw)
    async with serve(h, gw) as client:
        assert await w.poll_once(client) == "cosigned tree size 10"
        h.alter_subject(3, "someone-else")
        rechain(h, h.rows())
        await gw.write(5)                  # the log goes on growing on top of the rewrite
        await resign(h, gw.key, gw.clock)  # signed with the real key: only consistency can tell
        outcome = await w.poll_once(client)
        assert outcome.startswith(f"REFUSED {Verdict.FORK}"), outcome
        assert (await w.poll_once(client)).startswith("refusing")
    reopened = StateFile(tmp_path / "witness", w.signer).load()   # the refusal survives a restart
    assert reopened is not None and reopened.refusal is not None and reopened.refusal["verdict"] == "fork"
    assert reopened.seen is not None and reopened.seen["tree_size"] == 10


async def test_a_rollback_shown_to_a_witness_is_refused(h: Harness, tmp_path: Path) -> None:
    gw = Gateway(h)
    await gw.write(10)
    await gw.checkpoint()
    await gw.write(5)
    await gw.checkpoint()
    w = witness(tmp_path, gw)
    async with serve(h, gw) as client:
        assert await w.poll_once(client) == "cosigned tree size 15"
        drop_checkpoints(h, above=10)      # an old backup restored: the log is back at 10
        outcome = await w.poll_once(client)
    assert outcome.startswith(f"REFUSED {Verdict.ROLLBACK}"), outcome
