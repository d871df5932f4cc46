"""Inclusion proofs a citizen or auditor can check offline, and when (and whether) to sign a checkpoint.

A proof (format ``passerelle.audit.proof/1``) carries one record's canonical
text and previous hash, its RFC 9162 audit path, and the signed checkpoint it
leads to. Checking it needs no access to the gateway:

1. ``record_hash = SHA-256(ascii(prev_hash) || canonical)`` (see ``audit_chain``);
2. the audit path puts ``record_hash`` at leaf ``seq - 1`` under the checkpoint's root;
3. the checkpoint's signature is valid for the gateway's public key.

Pure: signature checking is a callable passed in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from gateway.core.audit_chain import CANONICAL_VERSION
from gateway.core.merkle import Checkpoint, checkpoint_signature_ok, verify_consistency, verify_inclusion

__all__ = [
    "PROOF_FORMAT", "Due", "InclusionProof", "SigningRefused", "check_proof", "checkpoint_due", "contradiction",
    "proof_path_hex", "retention_cutoff_us",
]

PROOF_FORMAT = "passerelle.audit.proof/1"


class SigningRefused(Exception):
    """The signer will not sign the log as it is: nothing is signed (one line, for the operator)."""


_DAY_US = 86_400_000_000


@dataclass(frozen=True, slots=True)
class InclusionProof:
    seq: int
    record_hash: str                # hex
    prev_hash: str                  # hex
    canonical: str                  # the record's canonical text
    audit_path: tuple[bytes, ...]   # leaf first
    checkpoint: Checkpoint


def check_proof(proof: InclusionProof, verify_signature: Callable[[bytes, bytes], bool]) -> list[str]:
    """Everything wrong with ``proof``; an empty list means it holds."""
    problems: list[str] = []
    seq, cp = proof.seq, proof.checkpoint
    recomputed = hashlib.sha256((proof.prev_hash + proof.canonical).encode()).hexdigest()
    if recomputed != proof.record_hash:
        problems.append("the record's content does not hash to record_hash")
    if _canonical_seq(proof.canonical) != seq:
        problems.append(f"the canonical text is not record {seq}")
    try:
        leaf = bytes.fromhex(proof.record_hash)
    except ValueError:
        leaf = b""
    if not verify_inclusion(leaf, seq - 1, cp.tree_size, proof.audit_path, cp.root_hash):
        problems.append(f"the audit path does not lead from record {seq} to the checkpoint's root")
    if not checkpoint_signature_ok(cp, verify_signature):
        problems.append("the checkpoint's signature is not valid for this key")
    return problems


def _canonical_seq(canonical: str) -> int | None:
    try:
        values = json.loads(canonical)
    except ValueError:
        return None
    if not isinstance(values, list) or len(values) < 2 or values[0] != CANONICAL_VERSION:
        return None
    return values[1] if isinstance(values[1], int) else None


class Due(StrEnum):
    """What the latest signed checkpoint says about signing the log as it is now."""

    DUE = "due"                # the log grew past it
    UP_TO_DATE = "up-to-date"  # same size, same root: nothing to sign
    SHRUNK = "shrunk"          # the log is smaller than what was signed: records were removed
    FORKED = "forked"          # same size, another root: records were rewritten


def checkpoint_due(latest: Checkpoint | None, head_seq: int, head_root: bytes | None = None) -> Due:
    """Is a checkpoint of ``(head_seq, head_root)`` due after ``latest`` (one checkpoint per tree size)?

    A log smaller than ``latest``, or of its size with another root, is not "nothing to sign":
    it contradicts a signature, and the signer must refuse (``SHRUNK``, ``FORKED``).
    """
    signed = latest.tree_size if latest is not None else 0
    if head_seq < signed:
        return Due.SHRUNK
    if head_seq > signed:
        return Due.DUE
    if latest is not None and head_root is not None and head_root != latest.root_hash:
        return Due.FORKED
    return Due.UP_TO_DATE


def contradiction(ref: Checkpoint, head_seq: int, head_root: bytes, proof: Sequence[bytes]) -> str | None:
    """Why the tree ``(head_seq, head_root)`` does not extend the signed ``ref``, or ``None`` when it does.

    ``proof`` is the RFC 9162 consistency proof from ``ref.tree_size`` to ``head_seq``.
    """
    if head_seq < ref.tree_size:
        return (f"the log holds {head_seq} records but a checkpoint of {ref.tree_size} was signed: "
                "records were removed")  # fmt: skip
    if not verify_consistency(ref.tree_size, head_seq, proof, ref.root_hash, head_root):
        return (f"the log's first {ref.tree_size} records no longer hash to the root signed for them: "
                "records were altered, removed or reordered, and the log rechained")  # fmt: skip
    return None


def retention_cutoff_us(now_us: int, retention_days: int) -> int | None:
    """Records older than this are purged; ``None`` keeps everything (retention 0)."""
    return now_us - retention_days * _DAY_US if retention_days > 0 else None


def proof_path_hex(path: Sequence[bytes]) -> list[str]:
    return [p.hex() for p in path]
