"""Inclusion proofs a citizen or auditor can check offline, and when to sign a checkpoint.

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

from gateway.core.audit_chain import CANONICAL_VERSION
from gateway.core.merkle import Checkpoint, checkpoint_signature_ok, verify_inclusion

__all__ = [
    "PROOF_FORMAT", "InclusionProof", "check_proof", "checkpoint_due", "proof_path_hex", "retention_cutoff_us",
]

PROOF_FORMAT = "passerelle.audit.proof/1"
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


def checkpoint_due(latest: Checkpoint | None, head_seq: int) -> bool:
    """A new checkpoint is due when the log grew past the latest one (one checkpoint per tree size)."""
    return head_seq > (latest.tree_size if latest is not None else 0)


def retention_cutoff_us(now_us: int, retention_days: int) -> int | None:
    """Records older than this are purged; ``None`` keeps everything (retention 0)."""
    return now_us - retention_days * _DAY_US if retention_days > 0 else None


def proof_path_hex(path: Sequence[bytes]) -> list[str]:
    return [p.hex() for p in path]
