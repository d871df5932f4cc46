"""RFC 9162 (Certificate Transparency v2) Merkle trees over audit record hashes.

Leaves are the record hashes (32 raw bytes); the leaf hash is ``SHA-256(0x00 || leaf)``
and an interior node is ``SHA-256(0x01 || left || right)``, so the tree head of
``n`` records can be compared with any RFC 6962/9162 implementation.

A *frontier* is the list of roots of the maximal perfect subtrees covering the
first ``n`` leaves, largest first. It is all that is needed to extend the tree,
which is how the log stays checkable after old records are purged.

A ``Checkpoint`` is a signed tree head. Signing is done by a callable passed in,
so this module stays free of key handling and of any I/O.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

__all__ = [
    "EMPTY_ROOT",
    "Checkpoint",
    "RangeHasher",
    "checkpoint_payload",
    "checkpoint_signature_ok",
    "frontier_push",
    "frontier_root",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "sign_checkpoint_with",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()
_CHECKPOINT_ORIGIN = "passerelle.audit.checkpoint/1"


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def frontier_push(frontier: list[bytes], size: int, leaf: bytes) -> None:
    """Extend ``frontier`` (of a tree with ``size`` leaves) by one leaf, in place."""
    node = leaf_hash(leaf)
    while size & 1:
        node = node_hash(frontier.pop(), node)
        size >>= 1
    frontier.append(node)


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """The tree head of the tree the frontier describes."""
    if not frontier:
        return EMPTY_ROOT
    node = frontier[-1]
    for left in reversed(frontier[:-1]):
        node = node_hash(left, node)
    return node


class RangeHasher:
    """Hashes aligned subtrees of a tree whose first ``offset`` leaves may be gone.

    ``frontier`` must describe exactly those first ``offset`` leaves; ``leaves``
    are the leaves from index ``offset`` on. Proof siblings that lie wholly in the
    purged prefix are always frontier nodes, so proofs for kept leaves still work.
    """

    def __init__(self, leaves: Sequence[bytes], *, offset: int = 0, frontier: Sequence[bytes] = ()) -> None:
        self.leaves = leaves
        self.offset = offset
        self.size = offset + len(leaves)
        self._prefix: dict[tuple[int, int], bytes] = {}
        if offset:  # the whole purged prefix (a fully purged log's head)
            self._prefix[(0, offset)] = frontier_root(frontier)
        start = offset
        for node in reversed(frontier):  # smallest subtree is rightmost
            width = start & -start if start else 0
            self._prefix[(start - width, start)] = node
            start -= width

    def __call__(self, lo: int, hi: int) -> bytes:
        if hi <= self.offset:
            try:
                return self._prefix[(lo, hi)]
            except KeyError:
                raise ValueError(f"leaves {lo}..{hi - 1} were purged") from None
        if hi - lo == 1:
            return leaf_hash(self.leaves[lo - self.offset])
        k = _split(hi - lo)
        return node_hash(self(lo, lo + k), self(lo + k, hi))


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 §2.1.1."""
    return RangeHasher(leaves)(0, len(leaves)) if leaves else EMPTY_ROOT


def inclusion_proof(index: int, size: int, subtree: RangeHasher | Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, leaf first."""
    hasher = subtree if isinstance(subtree, RangeHasher) else RangeHasher(subtree)
    if not 0 <= index < size <= hasher.size:
        raise ValueError(f"no leaf {index} in a tree of {size}")
    proof: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            proof.append(hasher(lo + k, hi))
            hi = lo + k
        else:
            proof.append(hasher(lo, lo + k))
            lo = lo + k
    proof.reverse()
    return proof


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` put ``leaf`` at ``index`` under ``root_hash``?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: the first ``tree_size`` records hash to ``root_hash``."""

    tree_size: int
    root_hash: bytes
    time_us: int
    signature: bytes = b""
    key_id: str = ""


def checkpoint_payload(tree_size: int, root_hash: bytes, time_us: int, key_id: str) -> bytes:
    """The signed bytes, a C2SP-style note body: origin, size, root, time, key id."""
    root_b64 = base64.b64encode(root_hash).decode("ascii")
    return f"{_CHECKPOINT_ORIGIN}\n{tree_size}\n{root_b64}\n{time_us}\n{key_id}\n".encode()


def _payload_of(cp: Checkpoint) -> bytes:
    return checkpoint_payload(cp.tree_size, cp.root_hash, cp.time_us, cp.key_id)


def sign_checkpoint_with(cp: Checkpoint, sign: Callable[[bytes], bytes]) -> Checkpoint:
    """Return ``cp`` carrying ``sign(payload)``."""
    return replace(cp, signature=sign(_payload_of(cp)))


def checkpoint_signature_ok(cp: Checkpoint, verify: Callable[[bytes, bytes], bool]) -> bool:
    """``verify(payload, signature)`` applied to the checkpoint."""
    return bool(cp.signature) and verify(_payload_of(cp), cp.signature)
