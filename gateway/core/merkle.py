"""RFC 9162 (Certificate Transparency v2) Merkle trees over audit record hashes.

Leaves are the record hashes (32 raw bytes); the leaf hash is ``SHA-256(0x00 || leaf)``
and an interior node is ``SHA-256(0x01 || left || right)``, so the tree head of
``n`` records can be compared with any RFC 6962/9162 implementation.

A *frontier* is the list of roots of the maximal perfect subtrees covering the
first ``n`` leaves, largest first. It is all that is needed to extend the tree,
which is how the log stays checkable after old records are purged.

Consistency proofs (RFC 9162 §2.1.4) show that a tree of ``new`` leaves extends
the tree of ``old`` leaves: nothing was removed, changed or reordered.

A ``Checkpoint`` is a signed tree head, written as a C2SP tlog-checkpoint note
(see ``gateway.core.signed_note``). Signing is done by a callable passed in, so
this module stays free of key handling and of any I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from gateway.core.signed_note import Note, NoteSignature, checkpoint_text, parse_checkpoint_text, parse_note

__all__ = [
    "EMPTY_ROOT",
    "Checkpoint",
    "RangeHasher",
    "checkpoint_from_note",
    "checkpoint_note",
    "checkpoint_payload",
    "checkpoint_signature_ok",
    "consistency_proof",
    "frontier_push",
    "frontier_root",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "sign_checkpoint_with",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


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


def consistency_proof(old_size: int, new_size: int, subtree: RangeHasher | Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1: the nodes that show the first ``old_size`` leaves
    are a prefix of the first ``new_size``. Empty when ``old_size`` is 0 or equals ``new_size``.

    Raises ``ValueError`` when the sizes are out of range, or when a needed node lies in a
    purged prefix that the anchor's frontier does not keep (a proof from a size before the
    anchor that is not on the frontier's boundaries).
    """
    hasher = subtree if isinstance(subtree, RangeHasher) else RangeHasher(subtree)
    if not 0 <= old_size <= new_size <= hasher.size:
        raise ValueError(f"no consistency proof from {old_size} to {new_size} in a tree of {hasher.size}")
    if old_size in (0, new_size):
        return []
    return _subproof(old_size, 0, new_size, True, hasher)


def _subproof(m: int, lo: int, hi: int, whole: bool, h: RangeHasher) -> list[bytes]:
    if m == hi - lo:
        return [] if whole else [h(lo, hi)]
    k = _split(hi - lo)
    if m <= k:
        return [*_subproof(m, lo, lo + k, whole, h), h(lo + k, hi)]
    return [*_subproof(m - k, lo + k, hi, False, h), h(lo, lo + k)]


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """RFC 9162 §2.1.4.2: does ``proof`` show the tree ``(new_size, new_root)`` extends ``(old_size, old_root)``?

    Sizes in leaves, roots 32 raw bytes. An empty old tree is a prefix of every tree.
    """
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: the first ``tree_size`` records hash to ``root_hash``.

    ``origin`` is the log's C2SP origin (also its key name); ``signature`` the 64-byte
    Ed25519 note signature over ``checkpoint_payload``; ``key_id`` the C2SP key id in hex
    (8 digits). ``time_us`` is when it was signed (epoch µs): stored beside the note, not
    signed (C2SP recommends no extension lines); a witness's cosignature carries a signed time.
    """

    tree_size: int
    root_hash: bytes
    time_us: int
    signature: bytes = b""
    key_id: str = ""
    origin: str = "passerelle.demo/audit"


def checkpoint_payload(cp: Checkpoint) -> bytes:
    """The signed bytes: the C2SP checkpoint note text (origin, size, base64 root)."""
    return checkpoint_text(cp.origin, cp.tree_size, cp.root_hash).encode()


def sign_checkpoint_with(cp: Checkpoint, sign: Callable[[bytes], bytes]) -> Checkpoint:
    """Return ``cp`` carrying ``sign(payload)``."""
    return replace(cp, signature=sign(checkpoint_payload(cp)))


def checkpoint_signature_ok(cp: Checkpoint, verify: Callable[[bytes, bytes], bool]) -> bool:
    """``verify(payload, signature)`` applied to the checkpoint."""
    return bool(cp.signature) and verify(checkpoint_payload(cp), cp.signature)


def checkpoint_note(cp: Checkpoint) -> Note:
    """The checkpoint as a C2SP signed note, the log's signature line keyed by its origin."""
    sig = NoteSignature(cp.origin, bytes.fromhex(cp.key_id or "00000000"), cp.signature)
    return Note(checkpoint_payload(cp).decode(), (sig,))


def checkpoint_from_note(text: str, time_us: int = 0) -> tuple[Checkpoint, Note]:
    """Parse a signed checkpoint note; the ``Checkpoint`` carries the origin-named signature if any.

    Raises ``gateway.core.signed_note.NoteError`` when the text is not a checkpoint note.
    Signatures are not checked here.
    """
    note = parse_note(text)
    body = parse_checkpoint_text(note.text)
    own = next((s for s in note.signatures if s.name == body.origin and len(s.signature) == 64), None)
    cp = Checkpoint(body.tree_size, body.root_hash, time_us, own.signature if own else b"",
                    own.key_id.hex() if own else "", body.origin)  # fmt: skip
    return cp, note
