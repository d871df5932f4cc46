"""Signing checkpoints incrementally, over the fake, SQLite and PostgreSQL stores."""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest

from adapters.keys.file_signer import FileNoteSigner, generate_ed25519_pem
from adapters.stores.audit_checkpoints import IncrementalTree, StoreCheckpointSigner, TamperedLog, make_proof
from adapters.stores.audit_signing import verify_checkpoint
from gateway.core.audit_chain import Tamper
from gateway.core.audit_proof import check_proof
from tests.integration.conftest import Harness
from tests.integration.test_audit_stores import T0, fill, record


def _pem() -> bytes:
    return generate_ed25519_pem()


def _signer(h: Harness, pem: bytes | None = None) -> StoreCheckpointSigner:
    clock = iter(range(T0, T0 + 10_000))
    key = FileNoteSigner("test.example/log", pem or _pem())
    return StoreCheckpointSigner(h.store, key, clock_us=lambda: next(clock))


async def test_the_incremental_tree_agrees_with_the_full_tree_head(harness: Harness) -> None:
    tree = IncrementalTree(harness.store)
    for n in (1, 6, 0, 25):
        for i in range(n):
            await harness.store.append(record(1000 + i))
        assert await tree.advance() == await harness.store.tree_head()


async def test_what_one_checkpoint_holds_does_not_grow_with_the_records_appended_since(harness: Harness) -> None:
    # The peak of Python allocations while the tree advances over 12,000 new records is that of 3,000:
    # rows are read in small pages and each leaf is pushed as it is read. Keeping every new hash and
    # reading 10,000-row pages held ~3 KB per new SQLite record at once (36 MB per checkpoint under
    # 1,000 exchanges/s), which the allocators kept as fragmentation: the gateway's RSS grew at each one.
    tree = IncrementalTree(harness.store)
    peaks, seq = [], 0
    for n in (3_000, 12_000):
        for start in range(seq, seq + n, 1_000):   # concurrent appends: group commits of up to 1,000
            await asyncio.gather(*(harness.store.append(record(i)) for i in range(start + 1, start + 1_001)))
        seq += n
        tracemalloc.start()
        try:
            assert (await tree.advance())[0] == seq
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < peaks[0] + 512 * 1024, f"peak bytes after 3,000 and 12,000 new records: {peaks}"
    assert await tree.advance() == await harness.store.tree_head()


async def test_the_tree_follows_a_purge_past_what_it_had_seen(harness: Harness) -> None:
    await fill(harness, 10)
    tree = IncrementalTree(harness.store)
    await tree.advance()
    for i in range(100, 110):
        await harness.store.append(record(i))
    assert await harness.store.purge_before(T0 + 105) == 15   # beyond the tree's last size
    assert await tree.advance() == await harness.store.tree_head()
    await harness.store.purge_before(T0 + 1000)                # everything
    assert await tree.advance() == await harness.store.tree_head()


async def test_signed_checkpoints_verify_and_prove_inclusion(harness: Harness) -> None:
    signer = _signer(harness)
    assert await signer.checkpoint() is None          # empty log: nothing to sign
    await fill(harness, 9)
    cp = await signer.checkpoint()
    assert cp is not None and cp.tree_size == 9 and verify_checkpoint(cp, signer.public_key)
    assert await signer.checkpoint() is None          # no growth: no new checkpoint
    await fill(harness, 3)
    second = await signer.checkpoint()
    assert second is not None and second.tree_size == 12
    assert (await harness.store.verify(checkpoint_valid=signer.valid)).checkpoints == 2
    proof = await make_proof(harness.store, 4, second)
    assert proof is not None
    assert check_proof(proof, lambda payload, sig: verify_checkpoint(second, signer.public_key)) == []
    assert await make_proof(harness.store, 13, second) is None


async def test_two_signers_on_one_log_never_sign_one_size_twice(harness: Harness) -> None:
    pem = _pem()
    a, b = _signer(harness, pem), _signer(harness, pem)
    await fill(harness, 5)
    assert await a.checkpoint() is not None
    assert await b.checkpoint() is None
    assert [c.tree_size for c in await harness.store.checkpoints()] == [5]


async def test_a_tampered_log_is_not_signed(harness: Harness) -> None:
    signer = _signer(harness)
    await fill(harness, 6)
    await signer.checkpoint()
    await fill(harness, 6)
    harness.alter_subject(9, "someone-else")
    with pytest.raises(TamperedLog) as caught:
        await signer.checkpoint()
    result = caught.value.result
    assert result is not None and (result.tamper, result.seq) == (Tamper.ALTERED, 9)
    assert [c.tree_size for c in await harness.store.checkpoints()] == [6]


def test_the_checkpoints_remembered_as_checked_are_bounded() -> None:
    from adapters.stores import audit_checkpoints

    signer = object.__new__(audit_checkpoints.StoreCheckpointSigner)
    signer._checked = {}
    for size in range(1, audit_checkpoints._CHECKED_KEPT + 50):
        signer._remember((size, b"r"))
    assert len(signer._checked) == audit_checkpoints._CHECKED_KEPT
    assert (1, b"r") not in signer._checked and (audit_checkpoints._CHECKED_KEPT + 49, b"r") in signer._checked
