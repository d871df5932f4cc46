"""The whole check behind ``gateway audit verify``, over any audit store.

Chain and checkpoint roots (``audit_chain.verify_rows``), every checkpoint's
Ed25519 signature under the pinned log key, coverage (``log_audit.coverage_findings``),
and agreement with checkpoints kept outside the database, with their witnesses'
cosignatures (``log_audit.trusted_findings``). Works on the fake, SQLite and
PostgreSQL stores alike, so the tamper suite runs on all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.stores.audit_signing import verify_checkpoint
from adapters.witness.cosignatures import WitnessKey
from gateway.core.audit_chain import Anchor, VerifyResult, verify_rows
from gateway.core.log_audit import Coverage, coverage_findings, trusted_findings
from gateway.core.merkle import Checkpoint, checkpoint_from_note
from gateway.core.signed_note import NoteError, Verifier, verify_cosignature, verify_note

__all__ = ["LogCheck", "VerifyPolicy", "check_log"]


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    """What ``check_log`` demands. Times in seconds; ``now_us`` in epoch microseconds."""

    now_us: int
    interval_s: float
    retention_days: int
    max_unsigned_intervals: int = 3
    min_cosignatures: int = 0
    witnesses: Sequence[WitnessKey] = ()
    #: The checkpoint signer's own state (a signed note kept outside the database), when readable.
    signer_state: str = ""


@dataclass
class LogCheck:
    result: VerifyResult
    anchor: Anchor
    checkpoints: list[Checkpoint]
    findings: list[str] = field(default_factory=list)
    cosigned: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.result.ok and not self.findings


def _checkpoint_ok(cp: Checkpoint, key: Verifier) -> bool:
    return cp.origin == key.name and verify_checkpoint(cp, key.public_key)


async def check_log(
    store: Any, key: Verifier, policy: VerifyPolicy, trusted: Sequence[str] = (),
    progress: Callable[[Iterator[Any], int], Iterator[Any]] = lambda rows, total: rows,
) -> LogCheck:
    """Check ``store`` against the pinned log ``key`` and the ``trusted`` checkpoint notes."""  # fmt: skip
    anchor, cps, (head, _) = await store.anchor(), await store.checkpoints(), await store.chain_head()
    wanted = {anchor.seq + 1, *(cp.tree_size + 1 for cp in cps)}
    times: dict[int, int] = {}

    def noting(rows: Iterator[Any]) -> Iterator[Any]:
        for row in rows:
            if row[0] in wanted:
                times[row[0]] = row[1]
            yield row

    rows = noting(progress(store.iter_rows(), head - anchor.seq))
    result = await asyncio.to_thread(verify_rows, rows, cps, anchor=anchor,
                                     checkpoint_valid=lambda cp: _checkpoint_ok(cp, key))  # fmt: skip
    check = LogCheck(result, anchor, cps)
    if not result.ok:
        return check
    coverage = Coverage(result, anchor.seq, cps, times, head, policy.now_us, policy.interval_s,
                        policy.max_unsigned_intervals, policy.retention_days)  # fmt: skip
    check.findings += coverage_findings(coverage)
    if policy.signer_state:
        check.findings += await _check_trusted(store, policy.signer_state, key, head, cps, (), set(),
                                               label="the signer's own state (kept outside the database)")
    for text in trusted:
        check.findings += await _check_trusted(store, text, key, head, cps, policy.witnesses, check.cosigned)
    if len(check.cosigned) < policy.min_cosignatures:
        check.findings.append(f"{len(check.cosigned)} valid witness cosignature(s) on the trusted checkpoint(s), "
                              f"{policy.min_cosignatures} required" + ("" if trusted else " (give --trusted)"))
    return check


async def _check_trusted(
    store: Any, text: str, key: Verifier, head: int, cps: list[Checkpoint], witnesses: Sequence[WitnessKey],
    cosigned: set[str], label: str = "the trusted checkpoint",
) -> list[str]:  # fmt: skip
    try:
        cp, note = checkpoint_from_note(text)
    except NoteError as exc:
        return [f"{label} is not a C2SP checkpoint note: {exc}"]
    if cp.origin != key.name or not verify_note(note, key):
        return [f"{label} (tree size {cp.tree_size}) is not signed by the pinned log key "
                f"{key.name}: the log key was replaced, or this is another log"]  # fmt: skip
    cosigned.update(w.name for w in witnesses if verify_cosignature(note.text, note.signatures, w.verifier))
    anchor = await store.anchor()
    roots: dict[int, bytes | None] = {}
    if anchor.seq <= cp.tree_size <= head:
        size, root = await store.tree_head(cp.tree_size)
        roots[cp.tree_size] = root if size == cp.tree_size else None
    return trusted_findings(cp, head, lambda n: roots.get(n), cps, label)
