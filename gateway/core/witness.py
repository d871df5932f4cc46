"""What a witness decides about a log's new checkpoint (c2sp.org/tlog-witness semantics).

A witness keeps the last checkpoint it accepted for one log (origin, size, root).
Shown a newer one, it cosigns only when the log's signature is valid under the
pinned key and an RFC 9162 consistency proof shows the new tree extends the old
one. A smaller tree is a rollback; the same size with another root, or a proof
that fails, is a fork. A refusal is final: once a witness has seen two histories
it keeps refusing until its operator has looked (there is no automatic recovery
from evidence of a split view).

Pure: no I/O, no clock; the caller fetches, stores and signs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from gateway.core.merkle import verify_consistency
from gateway.core.signed_note import NoteError, Verifier, parse_checkpoint_text, parse_note, verify_note

__all__ = ["Seen", "Verdict", "WitnessDecision", "judge", "needs_proof"]


class Verdict(StrEnum):
    COSIGN = "cosign"              # consistent with what was seen: cosign it
    BAD_SIGNATURE = "bad-signature"  # not signed by the pinned log key (not stored as evidence of a fork)
    WRONG_ORIGIN = "wrong-origin"
    ROLLBACK = "rollback"          # smaller than a tree already cosigned
    FORK = "fork"                  # same size, other root; or no valid consistency proof


@dataclass(frozen=True, slots=True)
class Seen:
    """The last checkpoint a witness accepted."""

    origin: str
    tree_size: int
    root_hash: bytes
    note: str  # the log-signed note, as received


@dataclass(frozen=True, slots=True)
class WitnessDecision:
    verdict: Verdict
    detail: str
    accepted: Seen | None = None  # the new state when the verdict is COSIGN

    @property
    def refuses_for_good(self) -> bool:
        """A rollback or a fork is evidence against the log: the witness stops cosigning."""
        return self.verdict in (Verdict.ROLLBACK, Verdict.FORK)


def needs_proof(seen: Seen | None, note_text: str) -> tuple[int, int] | None:
    """``(from, to)`` of the consistency proof the witness needs for ``note_text``, or ``None``."""
    try:
        body = parse_checkpoint_text(parse_note(note_text).text)
    except NoteError:
        return None
    if seen is None or body.tree_size <= seen.tree_size or seen.tree_size == 0:
        return None
    return seen.tree_size, body.tree_size


def judge(seen: Seen | None, note_text: str, log_key: Verifier, proof: Sequence[bytes] = ()) -> WitnessDecision:
    """The witness's verdict on ``note_text`` given what it accepted before (``seen``)."""
    try:
        note = parse_note(note_text)
        body = parse_checkpoint_text(note.text)
    except NoteError as exc:
        return WitnessDecision(Verdict.BAD_SIGNATURE, f"not a checkpoint note: {exc}")
    if body.origin != log_key.name:
        return WitnessDecision(Verdict.WRONG_ORIGIN, f"origin {body.origin!r} is not the pinned log {log_key.name!r}")
    if not verify_note(note, log_key):
        return WitnessDecision(Verdict.BAD_SIGNATURE, "no valid signature by the pinned log key")
    new = Seen(body.origin, body.tree_size, body.root_hash, note_text)
    if seen is None:
        return WitnessDecision(Verdict.COSIGN, f"first checkpoint seen, size {body.tree_size}", new)
    if body.tree_size < seen.tree_size:
        return WitnessDecision(Verdict.ROLLBACK, f"tree size {body.tree_size} is smaller than the {seen.tree_size} "
                                                 "already cosigned: records were dropped or the log was replaced")
    if body.tree_size == seen.tree_size:
        if body.root_hash != seen.root_hash:
            return WitnessDecision(Verdict.FORK, f"two different roots for tree size {body.tree_size}: "
                                                 "the log was rewritten")
        return WitnessDecision(Verdict.COSIGN, f"same checkpoint, size {body.tree_size}", new)
    if not verify_consistency(seen.tree_size, body.tree_size, proof, seen.root_hash, body.root_hash):
        return WitnessDecision(Verdict.FORK, f"tree {body.tree_size} does not extend the tree {seen.tree_size} "
                                             "already cosigned (no valid consistency proof): the log was rewritten")
    return WitnessDecision(Verdict.COSIGN, f"consistent from {seen.tree_size} to {body.tree_size}", new)
