"""The audit store contract, run over the in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.keys.file_signer import FileNoteSigner, generate_ed25519_pem
from adapters.stores.audit_postgres import PostgresAuditLog
from adapters.stores.audit_signing import sign_checkpoint, verify_checkpoint
from gateway.core.audit_chain import Tamper, chain_hash
from gateway.core.errors import GatewayError, Reason
from gateway.core.merkle import Checkpoint, verify_inclusion
from gateway.core.ports import AuditQuery
from gateway.core.types import AuditRecord, EventKind, Outcome
from tests.integration.conftest import PG_DSN, Harness

T0 = 1_760_000_000_000_000
REPO = Path(__file__).resolve().parents[2]


def record(i: int, *, subject: str = "", consumer: str = "caf", purpose: str = "benefit") -> AuditRecord:
    return AuditRecord(
        time_us=T0 + i, kind=EventKind.EXCHANGE, consumer=consumer,
        service="registry.population.v1.PopulationRegistry/GetPerson", purpose=purpose,
        legal_basis="A6-1-e", legal_reference="CSS L512-1", subject=subject or f"ps-{i % 7}",
        consent_id="", case_id=f"case-{i}", officer_id="agent-7", request_id=f"req-{i}",
        trace_id="0" * 32, fields=("name", "birth_date"), outcome=Outcome.OK, reason="",
        latency_us=1200, protocol="grpc", extra={"n": str(i), "é": "ü"},
    )  # fmt: skip


async def fill(h: Harness, n: int) -> None:
    for i in range(1, n + 1):
        await h.store.append(record(i))


async def test_append_returns_gap_free_increasing_seq_and_chained_hashes(harness: Harness) -> None:
    receipts = [await harness.store.append(record(i)) for i in range(1, 6)]
    assert [r.seq for r in receipts] == [1, 2, 3, 4, 5]
    stored = await harness.store.get(3)
    assert stored is not None
    assert stored.record == record(3)
    assert stored.hash == receipts[2].hash == chain_hash(receipts[1].hash, 3, record(3))


async def test_records_appended_together_are_chained_in_order(harness: Harness) -> None:
    await harness.store.append(record(1))
    receipts = await harness.store.append_all([record(2), record(3), record(4)])
    assert [r.seq for r in receipts] == [2, 3, 4]
    for seq in (2, 3, 4):
        stored = await harness.store.get(seq)
        assert stored is not None and stored.record == record(seq)
    assert (await harness.store.verify()).ok


async def test_an_untouched_log_verifies(harness: Harness) -> None:
    await fill(harness, 20)
    result = await harness.store.verify()
    assert (result.ok, result.records, result.head_seq) == (True, 20, 20)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda h: h.alter_subject(7, "someone-else"), (Tamper.ALTERED, 7)),
        (lambda h: h.delete(7), (Tamper.DELETED, 7)),
        (lambda h: h.insert_after(7), (Tamper.INSERTED, 8)),
        (lambda h: h.swap(7, 8), (Tamper.REORDERED, 7)),
    ],
    ids=["altered", "deleted", "inserted", "swapped"],
)
async def test_tampering_is_detected_and_names_the_first_bad_record(
    harness: Harness, tamper: Callable[[Harness], None], expected: tuple[Tamper, int]
) -> None:
    await fill(harness, 12)
    tamper(harness)
    result = await harness.store.verify()
    assert (result.ok, result.tamper, result.seq) == (False, *expected)
    assert result.head_seq == expected[1] - 1


async def test_concurrent_appends_keep_one_gap_free_chain(harness: Harness) -> None:
    async def producer(p: int) -> list[int]:
        return [(await harness.store.append(record(p * 1000 + i))).seq for i in range(32)]

    seqs = sorted(s for batch in await asyncio.gather(*(producer(p) for p in range(64))) for s in batch)
    assert seqs == list(range(1, 2049))
    result = await harness.store.verify()
    assert (result.ok, result.records) == (True, 2048)


async def test_group_commit_batches_concurrent_appends(harness: Harness) -> None:
    await asyncio.gather(*(harness.store.append(record(i)) for i in range(500)))
    assert 1 <= harness.store.commits < 500


async def test_a_failed_write_is_audit_unavailable_and_the_store_recovers(harness: Harness) -> None:
    await fill(harness, 3)
    harness.break_writes()
    with pytest.raises(GatewayError) as failed:
        await harness.store.append(record(4))
    assert failed.value.reason is Reason.AUDIT_UNAVAILABLE
    harness.repair_writes()
    receipt = await harness.store.append(record(5))
    assert receipt.seq == 4
    assert (await harness.store.verify()).ok


async def test_inclusion_proof_verifies_against_a_signed_checkpoint(harness: Harness) -> None:
    key = FileNoteSigner("test.example/log", generate_ed25519_pem())
    await fill(harness, 13)
    size, root = await harness.store.tree_head()
    cp = sign_checkpoint(Checkpoint(size, root, T0), key)
    await harness.store.add_checkpoint(cp)
    assert await harness.store.latest_checkpoint() == cp
    assert verify_checkpoint(cp, key.public_key)
    assert (await harness.store.verify(checkpoint_valid=lambda c: verify_checkpoint(c, key.public_key))).ok
    stored = await harness.store.get(6)
    proof = await harness.store.inclusion_proof(6, cp.tree_size)
    assert verify_inclusion(bytes.fromhex(stored.hash), 5, cp.tree_size, proof, cp.root_hash)
    forged = chain_hash(stored.prev_hash, 6, record(99))
    assert not verify_inclusion(bytes.fromhex(forged), 5, cp.tree_size, proof, cp.root_hash)


async def test_a_rewritten_tail_disagrees_with_the_checkpoint(harness: Harness) -> None:
    """Deleting records after a checkpoint was signed is caught even at the end of the log."""
    await fill(harness, 10)
    size, root = await harness.store.tree_head()
    await harness.store.add_checkpoint(Checkpoint(size, root, T0))
    harness.delete(10)
    result = await harness.store.verify()
    assert (result.ok, result.tamper, result.seq) == (False, Tamper.TRUNCATED, 10)


async def test_purge_keeps_the_rest_verifiable_from_the_anchor(harness: Harness) -> None:
    await fill(harness, 30)
    size, root = await harness.store.tree_head()
    await harness.store.add_checkpoint(Checkpoint(size, root, T0))
    assert await harness.store.purge_before(T0 + 11) == 10
    await fill(harness, 3)
    anchor = await harness.store.anchor()
    assert anchor.seq == 10
    result = await harness.store.verify()
    assert (result.ok, result.records, result.checkpoints) == (True, 23, 1)
    stored = await harness.store.get(20)
    proof = await harness.store.inclusion_proof(20, size)
    assert verify_inclusion(bytes.fromhex(stored.hash), 19, size, proof, root)
    harness.alter_subject(11, "x")
    assert ((await harness.store.verify()).tamper, (await harness.store.verify()).seq) == (Tamper.ALTERED, 11)


async def test_query_filters_and_pages(harness: Harness) -> None:
    for i in range(1, 31):
        await harness.store.append(record(i, subject="alice" if i % 3 == 0 else "bob",
                                          consumer="tax" if i % 2 else "caf",
                                          purpose="audit" if i > 20 else "benefit"))  # fmt: skip
    page1 = await harness.store.query(AuditQuery(subject="alice", limit=4))
    page2 = await harness.store.query(AuditQuery(subject="alice", limit=4, after_seq=page1[-1].seq))
    assert [s.seq for s in page1 + page2] == [3, 6, 9, 12, 15, 18, 21, 24]
    by_time = await harness.store.query(AuditQuery(consumer="tax", since_us=T0 + 10, until_us=T0 + 16))
    assert [s.seq for s in by_time] == [11, 13, 15]
    by_purpose = await harness.store.query(AuditQuery(purpose="audit", subject="alice"))
    assert [s.seq for s in by_purpose] == [21, 24, 27, 30]


async def test_healthy_until_closed(harness: Harness) -> None:
    assert await harness.store.healthy()
    await harness.store.close()
    assert not await harness.store.healthy()
    with pytest.raises(GatewayError):
        await harness.store.append(record(1))


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from adapters.stores.audit_postgres import PostgresAuditLog
    from tests.integration.test_audit_stores import record

    async def main(dsn, schema, tag, n):
        store = PostgresAuditLog(dsn, schema=schema)
        await store.start()
        async def producer(p):
            for i in range(n // 16):
                await store.append(record(tag * 100000 + p * 1000 + i))
        await asyncio.gather(*(producer(p) for p in range(16)))
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    """
)


@pytest.mark.postgres
async def test_two_processes_append_into_one_gap_free_chain(pg_schema: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, PG_DSN, pg_schema, str(t), "800"], cwd=REPO, env=env)
        for t in (1, 2)
    ]
    assert [await asyncio.to_thread(p.wait, 60) for p in procs] == [0, 0]
    store = PostgresAuditLog(PG_DSN, schema=pg_schema)
    await store.start()
    try:
        result = await store.verify()
        assert (result.ok, result.records) == (True, 1600)
        tags = [s.record.time_us - T0 for s in await store.query(AuditQuery(limit=2000))]
        assert sorted(t // 100000 for t in tags) == [1] * 800 + [2] * 800
    finally:
        await store.close()
