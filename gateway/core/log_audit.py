"""Whether a verified chain is also a *covered* log: the checks ``gateway audit verify`` adds.

A hash chain alone proves nothing against whoever holds the database: they can
rechain. What they cannot forge is a signature by a key they do not hold, or a
checkpoint someone else kept. So besides the chain (``audit_chain.verify_rows``)
the log must be covered by signed checkpoints, on time, and agree with any
checkpoint obtained from outside the database. Each finding is one sentence
naming the cause; an empty list means the log holds.

Pure: the caller reads the store, checks signatures and passes the facts in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from gateway.core.audit_chain import VerifyResult
from gateway.core.merkle import Checkpoint

__all__ = ["Coverage", "coverage_findings", "trusted_findings"]


@dataclass(frozen=True, slots=True)
class Coverage:
    """What ``coverage_findings`` needs to know about the log.

    ``record_times`` maps seq -> time_us for at least the first record after the
    anchor and after each checkpoint (the moments a signature became due).
    Times in epoch microseconds; ``interval_s`` is ``checkpoint_interval_s``.
    """

    result: VerifyResult
    anchor_seq: int
    checkpoints: Sequence[Checkpoint]
    record_times: Mapping[int, int]
    head_seq: int
    now_us: int
    interval_s: float
    max_intervals: int
    retention_days: int


def coverage_findings(c: Coverage) -> list[str]:
    """Unsigned tails, skipped checkpoints, uncovered or unexpected retention anchors, n < m matches."""
    out: list[str] = []
    cps = sorted(c.checkpoints, key=lambda cp: cp.tree_size)
    checkable = [cp for cp in cps if cp.tree_size >= c.anchor_seq]
    if c.result.ok and c.result.checkpoints < len(checkable):
        out.append(f"only {c.result.checkpoints} of {len(checkable)} signed checkpoints match the records")
    if not checkable and c.head_seq > c.anchor_seq and c.interval_s > 0:
        out.append(f"records {c.anchor_seq + 1}..{c.head_seq} and no signed checkpoint at all although "
                   "checkpoints are on: the checkpoints were deleted (a rechained log looks like this), or "
                   "none was ever signed (`gateway audit checkpoint`)")  # fmt: skip
    if c.anchor_seq:
        if c.retention_days <= 0:
            out.append(f"records 1..{c.anchor_seq} were purged although retention is off "
                       "([gateway] audit_retention_days = 0)")  # fmt: skip
        if not checkable:
            out.append(f"the retention anchor at seq {c.anchor_seq} is covered by no signed checkpoint")
    out += _late_signatures(c, checkable)
    return out


def _late_signatures(c: Coverage, cps: Sequence[Checkpoint]) -> list[str]:
    """Each record must be covered by a checkpoint signed within ``max_intervals`` intervals of it."""
    allowed_us = int(c.max_intervals * c.interval_s * 1_000_000)
    out: list[str] = []
    boundary = c.anchor_seq
    for cp in cps:
        due = c.record_times.get(boundary + 1)
        if cp.tree_size > boundary and due is not None and cp.time_us - due > allowed_us:
            out.append(f"no checkpoint covered records {boundary + 1}..{cp.tree_size} for "
                       f"{(cp.time_us - due) / 1e6:.0f} s (more than {c.max_intervals} intervals): "
                       "checkpoints were skipped or deleted, or the gateway was down")  # fmt: skip
        boundary = max(boundary, cp.tree_size)
    if c.head_seq > boundary:
        due = c.record_times.get(boundary + 1)
        if c.interval_s <= 0:
            out.append(f"records {boundary + 1}..{c.head_seq} are covered by no signed checkpoint "
                       "and checkpoints are off ([gateway] checkpoint_interval_s = 0)")  # fmt: skip
        elif due is None or c.now_us - due > allowed_us:
            out.append(f"records {boundary + 1}..{c.head_seq} are covered by no signed checkpoint after more "
                       f"than {c.max_intervals} checkpoint intervals: they can be dropped or rewritten unnoticed")
    return out


def trusted_findings(
    trusted: Checkpoint, head_seq: int, root_at: Callable[[int], bytes | None], log_cps: Sequence[Checkpoint],
    label: str = "the trusted checkpoint",
) -> list[str]:  # fmt: skip
    """Does the log agree with ``trusted``, a signed checkpoint kept outside the database?

    ``root_at(n)`` is the log's Merkle root over its first ``n`` records, or ``None`` when
    those records were purged and the anchor's frontier cannot rebuild it; ``log_cps`` are the
    log's own (signature-checked) checkpoints, used only in that case.
    """
    size, where = trusted.tree_size, f"{label} (tree size {trusted.tree_size})"
    if size > head_seq:
        return [f"rollback: the log holds {head_seq} records but {where} covers {size}: "
                "records were dropped or the log was replaced"]  # fmt: skip
    root = root_at(size)
    if root is None:
        same = [cp for cp in log_cps if cp.tree_size == size]
        if same and same[0].root_hash == trusted.root_hash:
            return []
        return [f"{where} covers records purged under retention, and the log keeps no signed checkpoint of "
                "that size with its root: it cannot be checked"]  # fmt: skip
    if root != trusted.root_hash:
        return [f"rewrite: the log's first {size} records do not hash to the root of {where}: "
                "records were altered, removed or reordered, and the log rechained"]  # fmt: skip
    if log_cps and size > max(cp.tree_size for cp in log_cps):
        return [f"checkpoints deleted: {where} is larger than any checkpoint the log's database keeps"]
    return []
