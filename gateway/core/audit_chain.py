"""The exchange log's hash chain: canonical bytes, chain hashes, verification.

Canonical form (version ``passerelle.audit.v1``) of the record with sequence
number ``seq`` is the ASCII JSON array, without whitespace::

    ["passerelle.audit.v1", seq, time_us, kind, consumer, service, purpose,
     legal_basis, legal_reference, subject, consent_id, case_id, officer_id,
     request_id, trace_id, outcome, reason, latency_us, protocol, ai_system,
     hidden_until_us, hidden_reason, [fields...], {extra, keys sorted}]

A positional array is as canonical as an object with sorted keys and can be
rebuilt straight from a stored row, which keeps verification fast. The chain
hash of a record is ``SHA-256(ascii(prev_hash_hex) || canonical)`` as hex; the
first record's ``prev_hash`` is ``GENESIS_HASH``.

A *row* is the tuple of ``ROW_COLUMNS``: the stored columns, ``fields`` and
``extra`` as their canonical JSON text, so a row can be verified without
building any object.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from gateway.core.merkle import Checkpoint, frontier_push, frontier_root
from gateway.core.types import AuditRecord, EventKind, Outcome, StoredAuditRecord

__all__ = [
    "CANONICAL_VERSION",
    "GENESIS_HASH",
    "RECORD_COLUMNS",
    "ROW_COLUMNS",
    "Anchor",
    "Row",
    "Tamper",
    "VerifyResult",
    "canonical_bytes",
    "chain_hash",
    "chain_row",
    "record_values",
    "row_of",
    "stored_of",
    "verify_chain",
    "verify_rows",
]

CANONICAL_VERSION = "passerelle.audit.v1"
GENESIS_HASH = "0" * 64

RECORD_COLUMNS = (
    "time_us", "kind", "consumer", "service", "purpose", "legal_basis", "legal_reference", "subject",
    "consent_id", "case_id", "officer_id", "request_id", "trace_id", "outcome", "reason", "latency_us",
    "protocol", "ai_system", "hidden_until_us", "hidden_reason", "fields", "extra",
)  # fmt: skip
ROW_COLUMNS = ("seq", *RECORD_COLUMNS, "prev_hash", "hash")
_N_SCALARS = 1 + len(RECORD_COLUMNS) - 2  # seq and the scalar columns, before fields and extra
_PREFIX = f'["{CANONICAL_VERSION}",'

Row = tuple[Any, ...]

_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
if _c_make_encoder is not None:  # CPython: skip encode()'s per-call set-up, ~2x faster
    _c_encoder = _c_make_encoder(
        None, _json.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
    )

    def _encode(values: tuple[Any, ...]) -> str:
        return "".join(_c_encoder(values, 0))

    def _fields_json(fields: Sequence[str]) -> str:
        return "".join(_c_encoder(fields if isinstance(fields, tuple | list) else list(fields), 0))
else:  # pragma: no cover

    def _encode(values: tuple[Any, ...]) -> str:
        return _json.encode(values)

    def _fields_json(fields: Sequence[str]) -> str:
        return _json.encode(list(fields))


if _c_make_encoder is not None:  # the same text as json.dumps(sort_keys=True, separators=(",", ":")), set up once
    _c_sorted_encoder = _c_make_encoder(
        None, _json.default, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True
    )

    def _extra_json(extra: dict[str, str]) -> str:
        # Only an empty dict is "{}": a stored extra read back as None, [], 0 ... keeps its own text.
        return "".join(_c_sorted_encoder(extra, 0)) if extra or type(extra) is not dict else "{}"
else:  # pragma: no cover

    def _extra_json(extra: dict[str, str]) -> str:
        return json.dumps(extra, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def record_values(record: AuditRecord) -> tuple[Any, ...]:
    """The record as the values of ``RECORD_COLUMNS``, ready to store."""
    r = record
    return (
        r.time_us, r.kind.value, r.consumer, r.service, r.purpose, r.legal_basis, r.legal_reference,
        r.subject, r.consent_id, r.case_id, r.officer_id, r.request_id, r.trace_id, r.outcome.value,
        r.reason, r.latency_us, r.protocol, r.ai_system, r.hidden_until_us, r.hidden_reason,
        _fields_json(r.fields), _extra_json(r.extra),
    )  # fmt: skip


def _canonical_text(row: Row) -> str:
    """Canonical text of a row (or of ``(seq, *record_values)``)."""
    head = _encode(row[:_N_SCALARS])
    return f"{_PREFIX}{head[1:-1]},{row[_N_SCALARS]},{row[_N_SCALARS + 1]}]"


def canonical_bytes(seq: int, record: AuditRecord) -> bytes:
    return _canonical_text((seq, *record_values(record))).encode("ascii")


def _hash_text(prev_hash: str, canonical: str) -> str:
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def chain_hash(prev_hash: str, seq: int, record: AuditRecord) -> str:
    """SHA-256 hex over the previous hash (ASCII hex) and the canonical bytes."""
    return _hash_text(prev_hash, _canonical_text((seq, *record_values(record))))


def chain_row(prev_hash: str, seq: int, record: AuditRecord) -> Row:
    """The stored row of ``record`` appended at ``seq`` after ``prev_hash``: ``(seq, *record_values,
    prev_hash, chain_hash)``, the record's values encoded once for both the row and its hash."""
    values = (seq, *record_values(record))
    return (*values, prev_hash, _hash_text(prev_hash, _canonical_text(values)))


def row_of(stored: StoredAuditRecord) -> Row:
    return (stored.seq, *record_values(stored.record), stored.prev_hash, stored.hash)


def stored_of(row: Row) -> StoredAuditRecord:
    """Rebuild the typed record from a stored row."""
    (seq, time_us, kind, consumer, service, purpose, legal_basis, legal_reference, subject, consent_id,
     case_id, officer_id, request_id, trace_id, outcome, reason, latency_us, protocol, ai_system,
     hidden_until_us, hidden_reason, fields, extra, prev_hash, hash_) = row  # fmt: skip
    record = AuditRecord(
        time_us=time_us, kind=EventKind(kind), consumer=consumer, service=service, purpose=purpose,
        legal_basis=legal_basis, legal_reference=legal_reference, subject=subject, consent_id=consent_id,
        case_id=case_id, officer_id=officer_id, request_id=request_id, trace_id=trace_id,
        fields=tuple(json.loads(fields)), outcome=Outcome(outcome), reason=reason, latency_us=latency_us,
        protocol=protocol, ai_system=ai_system, hidden_until_us=hidden_until_us,
        hidden_reason=hidden_reason, extra=json.loads(extra),
    )  # fmt: skip
    return StoredAuditRecord(seq=seq, record=record, prev_hash=prev_hash, hash=hash_)


class Tamper(StrEnum):
    ALTERED = "altered"        # content, hash or link of this record changed
    DELETED = "deleted"        # this seq is missing (gap, or later records renumbered)
    INSERTED = "inserted"      # this record was not in the original chain
    REORDERED = "reordered"    # this record and the next one changed places
    TRUNCATED = "truncated"    # the log ends before a signed checkpoint's size
    CHECKPOINT = "checkpoint"  # the chain is self-consistent but disagrees with a signed checkpoint


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where verification starts after a purge: the last purged record.

    ``frontier`` is the Merkle frontier of records 1..seq, so checkpoints past the
    anchor can still be checked (see ``gateway.core.merkle``).
    """

    seq: int = 0
    hash: str = GENESIS_HASH
    frontier: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    records: int                  # records checked
    head_seq: int                 # last good seq (on a checkpoint failure: the last matching checkpoint's size)
    head_hash: str
    checkpoints: int = 0          # checkpoints whose root matched
    tamper: Tamper | None = None
    seq: int | None = None        # the first bad record
    detail: str = ""
    signed_seq: int = 0           # the size of the last signed checkpoint whose root matched (0: none)


def verify_rows(
    rows: Iterable[Row],
    checkpoints: Iterable[Checkpoint] = (),
    *,
    anchor: Anchor | None = None,
    checkpoint_valid: Callable[[Checkpoint], bool] | None = None,
) -> VerifyResult:
    """Check the chain of ``rows`` (ascending seq) and the roots of ``checkpoints``.

    Stops at the first bad record and says what is wrong with it. Checkpoints
    older than the anchor cannot be checked and are skipped; ``checkpoint_valid``,
    when given, checks each checkpoint's signature first.
    """
    start = anchor or Anchor()
    pending = sorted((c for c in checkpoints if c.tree_size >= start.seq), key=lambda c: c.tree_size)
    for cp in pending:
        if checkpoint_valid is not None and not checkpoint_valid(cp):
            return _bad(0, start.seq, start.hash, 0, Tamper.CHECKPOINT, cp.tree_size, "bad signature")
    return _walk(iter(rows), pending, start)


def _bad(
    records: int, seq: int, hash_: str, cps: int, tamper: Tamper, at: int, detail: str, signed: int = 0
) -> VerifyResult:  # fmt: skip
    return VerifyResult(False, records, seq, hash_, cps, tamper, at, detail, signed)


def _walk(rows: Iterator[Row], pending: list[Checkpoint], start: Anchor) -> VerifyResult:
    frontier = list(start.frontier)
    want_merkle = bool(pending)
    next_cp = pending[0].tree_size if pending else -1
    cp_i = 0
    seq, prev, before = start.seq, start.hash, ""
    signed, signed_hash = 0, start.hash  # the last checkpoint that matched: what is really verified
    records = 0
    sha256, n_scalars, prefix = hashlib.sha256, _N_SCALARS, _PREFIX
    if next_cp == seq:
        if frontier_root(frontier) != pending[0].root_hash:
            return _bad(0, seq, prev, 0, Tamper.CHECKPOINT, seq, "anchor does not match checkpoint")
        cp_i, next_cp = _advance(pending, 1)
        signed = seq
    for row in rows:
        seq += 1
        head = _encode(row[:n_scalars])
        text = f"{prev}{prefix}{head[1:-1]},{row[n_scalars]},{row[n_scalars + 1]}]"
        digest = sha256(text.encode()).hexdigest()
        if row[0] != seq or row[-2] != prev or row[-1] != digest:
            return replace(_diagnose(row, rows, seq, prev, before, records, cp_i), signed_seq=signed)
        before, prev = prev, digest
        records += 1
        if want_merkle:
            frontier_push(frontier, seq - 1, bytes.fromhex(digest))
            if seq == next_cp:
                if frontier_root(frontier) != pending[cp_i].root_hash:
                    return _bad(records, signed, signed_hash, cp_i, Tamper.CHECKPOINT, seq,
                                f"records up to {seq} do not hash to the signed root", signed)  # fmt: skip
                cp_i, next_cp = _advance(pending, cp_i + 1)
                signed, signed_hash = seq, prev
                want_merkle = next_cp > 0
    if next_cp > 0:
        return _bad(records, signed, signed_hash, cp_i, Tamper.TRUNCATED, seq + 1,
                    f"log ends at {seq}, checkpoint covers {next_cp}", signed)  # fmt: skip
    return VerifyResult(True, records, seq, prev, cp_i, signed_seq=signed)


def _advance(pending: list[Checkpoint], i: int) -> tuple[int, int]:
    return i, pending[i].tree_size if i < len(pending) else -1


def _diagnose(
    row: Row, rows: Iterator[Row], seq: int, prev: str, before: str, n: int, cps: int
) -> VerifyResult:
    """Name the first bad record and what happened to it."""
    got_seq, got_prev, got_hash = row[0], row[-2], row[-1]

    def bad(tamper: Tamper, at: int, detail: str) -> VerifyResult:
        if at == seq - 1:  # the record before this one is the culprit: it is not good either
            return _bad(n - 1, seq - 2, before, cps, tamper, at, detail)
        return _bad(n, seq - 1, prev, cps, tamper, at, detail)

    if got_seq > seq:
        return bad(Tamper.DELETED, seq, f"seq {seq}..{got_seq - 1} missing")
    if got_seq < seq:
        return bad(Tamper.REORDERED, got_seq, f"seq {got_seq} found after {seq - 1}")
    self_ok = _hash_text(got_prev, _canonical_text(row)) == got_hash
    if got_prev == prev:
        return bad(Tamper.ALTERED, seq, "content does not match its hash")
    if before and got_prev == before:
        return bad(Tamper.INSERTED, seq - 1, f"record {seq} links past record {seq - 1}")
    nxt = next(rows, None)
    if nxt is not None and nxt[-2] == prev and nxt[-1] == got_prev:
        return bad(Tamper.REORDERED, seq, f"records {seq} and {seq + 1} swapped")
    if _hash_text(got_prev, _canonical_text((seq + 1, *row[1:]))) == got_hash:
        return bad(Tamper.DELETED, seq, f"record {seq} removed and later records renumbered")
    if self_ok:
        return bad(Tamper.ALTERED, seq - 1, f"record {seq - 1} no longer has the hash record {seq} links to")
    return bad(Tamper.ALTERED, seq, "content and link do not match")


def verify_chain(
    records: Iterable[StoredAuditRecord],
    checkpoints: Iterable[Checkpoint] = (),
    *,
    anchor: Anchor | None = None,
    checkpoint_valid: Callable[[Checkpoint], bool] | None = None,
) -> VerifyResult:
    """``verify_rows`` over typed records."""
    return verify_rows(map(row_of, records), checkpoints, anchor=anchor, checkpoint_valid=checkpoint_valid)
