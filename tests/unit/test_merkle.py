"""RFC 9162 Merkle trees: roots, inclusion proofs, frontiers and checkpoint payloads."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.merkle import (
    EMPTY_ROOT,
    Checkpoint,
    RangeHasher,
    checkpoint_signature_ok,
    consistency_proof,
    frontier_push,
    frontier_root,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    sign_checkpoint_with,
    verify_consistency,
    verify_inclusion,
)

leaves_st = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70)


def test_roots_follow_rfc_9162_for_small_trees() -> None:
    a, b, c = b"a", b"b", b"c"
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert root([a]) == hashlib.sha256(b"\x00a").digest()
    assert root([a, b, c]) == node_hash(node_hash(leaf_hash(a), leaf_hash(b)), leaf_hash(c))


@given(leaves_st, st.data())
def test_every_inclusion_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    size = data.draw(st.integers(1, len(leaves)))
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(index, size, leaves)
    assert verify_inclusion(leaves[index], index, size, proof, root(leaves[:size]))


@given(leaves_st, st.data())
def test_a_single_byte_change_breaks_the_proof(leaves: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = inclusion_proof(index, len(leaves), leaves)
    at, flip = data.draw(st.integers(0, 31)), data.draw(st.integers(1, 255))
    changed = bytearray(leaves[index])
    changed[at] ^= flip
    assert not verify_inclusion(bytes(changed), index, len(leaves), proof, root(leaves))


@given(leaves_st)
def test_the_frontier_gives_the_same_root(leaves: list[bytes]) -> None:
    frontier: list[bytes] = []
    for i, leaf in enumerate(leaves):
        frontier_push(frontier, i, leaf)
    assert frontier_root(frontier) == root(leaves)


@given(leaves_st, st.data())
def test_proofs_for_kept_leaves_survive_a_purged_prefix(leaves: list[bytes], data: st.DataObject) -> None:
    offset = data.draw(st.integers(0, len(leaves) - 1))
    frontier: list[bytes] = []
    for i, leaf in enumerate(leaves[:offset]):
        frontier_push(frontier, i, leaf)
    hasher = RangeHasher(leaves[offset:], offset=offset, frontier=frontier)
    index = data.draw(st.integers(offset, len(leaves) - 1))
    assert hasher(0, len(leaves)) == root(leaves)
    assert inclusion_proof(index, len(leaves), hasher) == inclusion_proof(index, len(leaves), leaves)


def test_a_checkpoint_signature_covers_size_and_root() -> None:
    def sign(payload: bytes) -> bytes:
        return hashlib.sha256(b"k" + payload).digest()

    def check(payload: bytes, signature: bytes) -> bool:
        return sign(payload) == signature

    cp = sign_checkpoint_with(Checkpoint(3, b"r" * 32, 1, key_id="k1"), sign)
    assert checkpoint_signature_ok(cp, check)
    assert not checkpoint_signature_ok(Checkpoint(4, cp.root_hash, 1, cp.signature, "k1"), check)
    assert not checkpoint_signature_ok(Checkpoint(3, b"s" * 32, 1, cp.signature, "k1"), check)


def _naive_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF of RFC 9162 §2.1.4.1, written straight from the definition over slices."""
    n = len(leaves)
    if m == n:
        return [] if whole else [root(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_naive_subproof(m, leaves[:k], whole), root(leaves[k:])]
    return [*_naive_subproof(m - k, leaves[k:], False), root(leaves[:k])]


@given(leaves_st, st.data())
def test_consistency_proofs_match_the_rfc_definition_and_verify(leaves: list[bytes], data: st.DataObject) -> None:
    new = data.draw(st.integers(1, len(leaves)))
    old = data.draw(st.integers(1, new))
    proof = consistency_proof(old, new, leaves)
    assert proof == (_naive_subproof(old, leaves[:new], True) if old < new else [])
    assert verify_consistency(old, new, proof, root(leaves[:old]), root(leaves[:new]))


@given(leaves_st, st.data())
def test_a_rewritten_prefix_fails_the_consistency_check(leaves: list[bytes], data: st.DataObject) -> None:
    new = data.draw(st.integers(1, len(leaves)))
    old = data.draw(st.integers(1, new))
    at = data.draw(st.integers(0, old - 1))
    forged = [*leaves[:at], hashlib.sha256(leaves[at]).digest(), *leaves[at + 1 :]]
    proof = consistency_proof(old, new, forged)
    assert not verify_consistency(old, new, proof, root(leaves[:old]), root(forged[:new]))


@given(leaves_st, st.data())
def test_a_consistency_proof_proves_nothing_about_other_sizes(leaves: list[bytes], data: st.DataObject) -> None:
    new = data.draw(st.integers(2, max(2, len(leaves))))
    leaves = leaves if len(leaves) >= new else leaves * new
    old = data.draw(st.integers(1, new - 1))
    proof = consistency_proof(old, new, leaves)
    assert not verify_consistency(old, new - 1, proof, root(leaves[:old]), root(leaves[: new - 1])) or old == new - 1
    assert not verify_consistency(new, old, proof, root(leaves[:new]), root(leaves[:old]))


@given(leaves_st, st.data())
def test_consistency_from_the_anchor_survives_a_purged_prefix(leaves: list[bytes], data: st.DataObject) -> None:
    offset = data.draw(st.integers(1, len(leaves)))
    frontier: list[bytes] = []
    for i, leaf in enumerate(leaves[:offset]):
        frontier_push(frontier, i, leaf)
    hasher = RangeHasher(leaves[offset:], offset=offset, frontier=frontier)
    assert consistency_proof(offset, len(leaves), hasher) == consistency_proof(offset, len(leaves), leaves)


def test_consistency_before_a_purged_prefix_is_refused_when_the_frontier_cannot_answer() -> None:
    leaves = [bytes([i]) * 32 for i in range(8)]
    frontier: list[bytes] = []
    for i, leaf in enumerate(leaves[:7]):
        frontier_push(frontier, i, leaf)
    hasher = RangeHasher(leaves[7:], offset=7, frontier=frontier)
    try:
        consistency_proof(3, 8, hasher)
    except ValueError as exc:
        assert "purged" in str(exc)
    else:
        raise AssertionError("a proof through purged leaves was made")
