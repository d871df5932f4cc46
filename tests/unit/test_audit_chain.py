"""The hash chain: canonical bytes and what verification says about tampering."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.audit_chain import (
    GENESIS_HASH,
    Row,
    Tamper,
    canonical_bytes,
    chain_hash,
    chain_row,
    record_values,
    row_of,
    stored_of,
    verify_chain,
    verify_rows,
)
from gateway.core.merkle import Checkpoint, root
from gateway.core.types import AuditRecord, EventKind, Outcome

text = st.text(max_size=12)
records_st = st.builds(
    AuditRecord, time_us=st.integers(0, 2**62), kind=st.sampled_from(EventKind), consumer=text,
    service=text, purpose=text, legal_basis=text, legal_reference=text, subject=text, consent_id=text,
    case_id=text, officer_id=text, request_id=text, trace_id=text, fields=st.tuples(text, text),
    outcome=st.sampled_from(Outcome), reason=text, latency_us=st.integers(0, 10**9), protocol=text,
    ai_system=text, hidden_until_us=st.integers(0, 2**62), hidden_reason=text,
    extra=st.dictionaries(text, text, max_size=3),
)  # fmt: skip


def chain(records: list[AuditRecord]) -> list[Row]:
    rows, prev = [], GENESIS_HASH
    for seq, record in enumerate(records, start=1):
        digest = chain_hash(prev, seq, record)
        rows.append((seq, *record_values(record), prev, digest))
        prev = digest
    return rows


def test_canonical_bytes_are_a_versioned_json_array_without_whitespace() -> None:
    record = AuditRecord(1, EventKind.EXCHANGE, "c", "s", "p", "b", "r", "subj", "", "", "", "", "", ("f",),
                         Outcome.OK, "", 5, "grpc", extra={"z": "1", "a": "é"})  # fmt: skip
    assert canonical_bytes(9, record) == (
        b'["passerelle.audit.v1",9,1,"exchange","c","s","p","b","r","subj","","","","","","ok","",5,'
        b'"grpc","",0,"",["f"],{"a":"\\u00e9","z":"1"}]'
    )


@given(st.lists(records_st, min_size=1, max_size=8))
def test_a_chain_of_any_records_verifies_and_round_trips(records: list[AuditRecord]) -> None:
    rows = chain(records)
    assert [stored_of(r).record for r in rows] == records
    assert verify_chain(map(stored_of, rows)).ok
    assert all(row_of(stored_of(r)) == r for r in rows)


@given(records_st, st.integers(1, 2**62), st.sampled_from([GENESIS_HASH, "ab" * 32]))
def test_chain_row_is_the_row_and_hash_the_stores_write(record: AuditRecord, seq: int, prev: str) -> None:
    assert chain_row(prev, seq, record) == (seq, *record_values(record), prev, chain_hash(prev, seq, record))


@given(st.lists(records_st, min_size=2, max_size=6), st.data())
def test_any_single_byte_change_in_the_canonical_bytes_changes_the_hash(
    records: list[AuditRecord], data: st.DataObject
) -> None:
    body = bytearray(canonical_bytes(1, records[0]))
    at, flip = data.draw(st.integers(0, len(body) - 1)), data.draw(st.integers(1, 127))
    original = chain_hash(GENESIS_HASH, 1, records[0])
    body[at] ^= flip
    assert hashlib.sha256(GENESIS_HASH.encode() + bytes(body)).hexdigest() != original


@given(st.lists(records_st, min_size=3, max_size=6), st.data())
def test_altering_any_record_is_named(records: list[AuditRecord], data: st.DataObject) -> None:
    rows = chain(records)
    victim = data.draw(st.integers(0, len(rows) - 1))
    changed = stored_of(rows[victim])
    new = replace(changed.record, latency_us=changed.record.latency_us + 1)
    rows[victim] = (changed.seq, *record_values(new), changed.prev_hash, changed.hash)
    result = verify_rows(rows)
    assert (result.ok, result.tamper, result.seq) == (False, Tamper.ALTERED, victim + 1)


def admin_records(n: int) -> list[AuditRecord]:
    return [
        AuditRecord(
            i, EventKind.ADMIN, "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", (), Outcome.OK, "", 0, "admin"
        )
        for i in range(n)
    ]


def test_a_rehashed_record_is_named_by_the_broken_link_after_it() -> None:
    rows = chain(admin_records(5))
    seq, prev = rows[2][0], rows[2][-2]
    forged = replace(stored_of(rows[2]).record, consumer="other")
    rows[2] = (seq, *record_values(forged), prev, chain_hash(prev, seq, forged))
    result = verify_rows(rows)
    assert (result.tamper, result.seq, result.head_seq) == (Tamper.ALTERED, 3, 2)


def test_a_checkpoint_catches_a_fully_rewritten_chain() -> None:
    records = admin_records(6)
    rows = chain(records)
    cp = Checkpoint(6, root([bytes.fromhex(r[-1]) for r in rows]), 0)
    rewritten = chain([*records[:3], replace(records[3], consumer="y"), *records[4:]])
    assert verify_rows(rows, [cp]).ok
    result = verify_rows(rewritten, [cp])
    assert (result.ok, result.tamper, result.seq) == (False, Tamper.CHECKPOINT, 6)


@given(st.lists(st.text(max_size=20), max_size=6))
def test_the_fields_column_is_the_json_text_it_always_was(fields: list[str]) -> None:
    import json

    from gateway.core.audit_chain import _fields_json

    expected = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
    assert _fields_json(tuple(fields)) == _fields_json(fields) == expected
