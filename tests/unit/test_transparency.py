"""The citizen's view of the log: embargo, paging, wording, export rows; proofs checked offline."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.keys.file_signer import FileNoteSigner, generate_ed25519_pem
from adapters.stores.audit_memory import InMemoryAuditLog
from adapters.stores.audit_signing import sign_checkpoint, verify_checkpoint
from gateway.core.audit_chain import canonical_bytes
from gateway.core.audit_proof import Due, InclusionProof, check_proof, checkpoint_due, retention_cutoff_us
from gateway.core.errors import GatewayError
from gateway.core.merkle import Checkpoint, checkpoint_signature_ok
from gateway.core.transparency import (
    Catalogue,
    entry_of,
    export_row,
    page_of,
    page_token,
    parse_bound,
    parse_page_token,
    split_embargo,
)
from gateway.core.types import AuditRecord, EventKind, Outcome, StoredAuditRecord

T0 = 1_760_000_000_000_000
DAY = 86_400_000_000
CAT = Catalogue(
    agencies={"cedies": "CEDIES"},
    purposes={"student-aid": {"fr": "Aide", "de": "Beihilfe", "en": "Aid"}},
    legal_bases={"A6-1-e": "GDPR Art. 6(1)(e) - public task"},
    categories={"p.v1.Pop/GetPerson": {"family_name": "NAME", "address": "ADDRESS"}},
)


def rec(
    seq: int, *, hidden_until: int = 0, kind: EventKind = EventKind.EXCHANGE, reason: str = ""
) -> StoredAuditRecord:
    record = AuditRecord(
        time_us=T0 + seq, kind=kind, consumer="cedies", service="p.v1.Pop/GetPerson", purpose="student-aid",
        legal_basis="A6-1-e", legal_reference="Loi 2014, art. 4", subject="ps-a", consent_id="", case_id="",
        officer_id="", request_id=f"r{seq}", trace_id="", fields=("family_name", "address") if not reason else (),
        outcome=Outcome.REFUSED if reason else Outcome.OK, reason=reason, latency_us=1, protocol="rest",
        hidden_until_us=hidden_until, hidden_reason="investigation" if hidden_until else "",
    )  # fmt: skip
    return StoredAuditRecord(seq, record, "0" * 64, f"{seq:064x}")


def test_an_entry_names_the_agency_purpose_fields_categories_and_legal_basis() -> None:
    e = entry_of(rec(3), CAT)
    assert (e.id, e.agency_name, e.purpose_title["de"]) == (3, "CEDIES", "Beihilfe")
    assert e.data_fields == (("family_name", "NAME"), ("address", "ADDRESS"))
    assert (e.legal_basis_title, e.outcome, e.reason) == ("GDPR Art. 6(1)(e) - public task", "ok", "")


def test_a_refused_attempt_carries_its_reason_and_title() -> None:
    e = entry_of(rec(4, reason="NO_MANDATE"), CAT)
    assert (e.outcome, e.reason, e.data_fields) == ("refused", "NO_MANDATE", ())
    assert e.reason_title.startswith("No mandate")


def test_embargoed_entries_are_counted_not_shown_until_their_date() -> None:
    records = [rec(1), rec(2, hidden_until=T0 + 10 * DAY), rec(3), rec(4, kind=EventKind.ADMIN)]
    shown, hidden = split_embargo(records, now_us=T0 + DAY)
    assert ([s.seq for s in shown], hidden) == ([1, 3], 1)
    shown, hidden = split_embargo(records, now_us=T0 + 10 * DAY)
    assert ([s.seq for s in shown], hidden) == ([1, 2, 3], 0)


def test_pages_follow_each_other_without_overlap() -> None:
    visible = [rec(i) for i in range(1, 8)]
    first = page_of(visible, 2, after=0, size=3, cat=CAT)
    second = page_of(visible, 2, after=first.next_after, size=3, cat=CAT)
    last = page_of(visible, 2, after=second.next_after, size=3, cat=CAT)
    assert [[e.id for e in p.entries] for p in (first, second, last)] == [[1, 2, 3], [4, 5, 6], [7]]
    assert (last.next_after, first.total, first.hidden) == (0, 7, 2)


def test_page_tokens_round_trip_and_foreign_tokens_are_refused() -> None:
    assert parse_page_token(page_token(42)) == 42
    assert parse_page_token("") == 0
    for bad in ("42", "bm9wZQ", "YWZ0ZXI6LTE", "%%%"):
        with pytest.raises(GatewayError):
            parse_page_token(bad)


def test_a_date_as_until_includes_the_whole_day() -> None:
    start = parse_bound("2026-03-01", name="since", end=False)
    end = parse_bound("2026-03-01", name="until", end=True)
    assert start is not None and end is not None and end - start == DAY
    assert parse_bound("2026-03-01T12:00:00Z", name="since", end=False) == start + DAY // 2
    with pytest.raises(GatewayError):
        parse_bound("yesterday", name="since", end=False)


def test_export_rows_have_one_cell_per_column() -> None:
    row = export_row(entry_of(rec(5), CAT))
    assert row[0] == "5" and row[5] == "family_name (NAME); address (ADDRESS)" and row[9] == "Aid"


def test_checkpoints_are_due_only_when_the_log_grew() -> None:
    cp = Checkpoint(10, b"r", T0)
    assert (checkpoint_due(None, 0), checkpoint_due(None, 1)) == (Due.UP_TO_DATE, Due.DUE)
    assert (checkpoint_due(cp, 10, b"r"), checkpoint_due(cp, 11)) == (Due.UP_TO_DATE, Due.DUE)


def test_a_log_smaller_than_its_latest_checkpoint_or_forked_at_its_size_is_no_reason_to_do_nothing() -> None:
    cp = Checkpoint(10, b"r", T0)
    assert (checkpoint_due(cp, 9), checkpoint_due(cp, 10, b"other")) == (Due.SHRUNK, Due.FORKED)


def test_retention_cuts_off_whole_days_and_zero_keeps_everything() -> None:
    assert retention_cutoff_us(T0, 0) is None
    assert retention_cutoff_us(T0, 2) == T0 - 2 * DAY


async def _proof() -> tuple[InclusionProof, FileNoteSigner]:
    key = FileNoteSigner("test.example/log", generate_ed25519_pem())
    store = InMemoryAuditLog()
    for i in range(1, 12):
        await store.append(rec(i).record)
    size, root = await store.tree_head()
    cp = sign_checkpoint(Checkpoint(size, root, T0), key)
    stored = await store.get(6)
    assert stored is not None
    path = await store.inclusion_proof(6, size)
    canonical = canonical_bytes(6, stored.record).decode()
    return InclusionProof(6, stored.hash, stored.prev_hash, canonical, tuple(path), cp), key


def _verifier(key: FileNoteSigner, cp: Checkpoint):  # type: ignore[no-untyped-def]
    return lambda payload, sig: verify_checkpoint(cp, key.public_key)


async def test_a_proof_checks_offline() -> None:
    proof, key = await _proof()
    assert check_proof(proof, _verifier(key, proof.checkpoint)) == []
    assert checkpoint_signature_ok(proof.checkpoint, _verifier(key, proof.checkpoint))


async def test_a_proof_with_altered_content_path_or_key_fails() -> None:
    proof, key = await _proof()
    other = FileNoteSigner("test.example/log", generate_ed25519_pem())
    altered = replace(proof, canonical=proof.canonical.replace("cedies", "police"))
    assert "does not hash" in check_proof(altered, _verifier(key, proof.checkpoint))[0]
    moved = replace(proof, audit_path=proof.audit_path[::-1])
    assert any("audit path" in p for p in check_proof(moved, _verifier(key, proof.checkpoint)))
    assert any("signature" in p for p in check_proof(proof, _verifier(other, proof.checkpoint)))
