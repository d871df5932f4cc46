"""Caller-chosen values: what may be recorded, what is refused, and what the pipeline records instead."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.caller_text import (
    UNKNOWN_PURPOSE,
    caller_id_problem,
    free_text_problem,
    holds_national_id,
    recorded_purpose,
)
from gateway.core.errors import GatewayError, Reason
from gateway.core.export_safety import csv_cell, csv_text
from gateway.core.identifiers import make_national_id, national_id_problem
from gateway.core.ports import AuditQuery
from tests.unit.test_pipeline import Stack, person_request, stack, valid_nid  # noqa: F401  (fixture)

URGENT = "URGENT: call +352 621 000 000 to keep your benefits"


@pytest.mark.parametrize("value", ["dossier-2026-0042", "a", "AI.reg/2025:17", "x" * 64, "cns_0123456789abcdef"])
def test_short_identifiers_may_be_recorded(value: str) -> None:
    assert caller_id_problem(value) is None


@pytest.mark.parametrize(
    "value",
    ["-1-1", "=HYPERLINK(\"http://x\")", "+352", "@SUM(A1)", "x" * 65, "a b", "a\tb", "<b>", "é", URGENT, "x" * 12_000],
)
def test_values_that_are_not_short_identifiers_are_refused(value: str) -> None:
    assert caller_id_problem(value) is not None


@pytest.mark.parametrize("value", [valid_nid(), f"case-{valid_nid()}", f"7{valid_nid()}0", f"a/{valid_nid()}.pdf"])
def test_anything_holding_a_national_id_is_refused(value: str) -> None:
    problem = caller_id_problem(value)
    assert problem is not None and "national" in problem and value not in problem


@pytest.mark.parametrize(
    "value", ["1952.0515.52689", "1952-05-15-526-89", "1952:051:552:689", "CALL.00352.621.1952051552689"]
)
def test_a_national_id_spread_out_with_separators_is_refused(value: str) -> None:
    """Issue 10 review, finding 5: x-case-id, x-officer-id, x-request-id with separators between the digits."""
    assert national_id_problem("1952051552689") is None  # the reviewer's value is a well-formed national id
    assert caller_id_problem(value) == "must not hold a national identification number"


@settings(max_examples=200, deadline=None)
@given(
    birth=st.dates(dt.date(1900, 1, 1), dt.date(2025, 12, 31)),
    seq=st.integers(0, 999),
    cuts=st.lists(st.integers(1, 12), max_size=6, unique=True),
    separator=st.sampled_from([".", "-", ":", "/", "_", " "]),
    prefix=st.from_regex(r"[a-z]{0,4}", fullmatch=True),
)
def test_any_national_id_is_found_whatever_separators_are_put_between_its_digits(
    birth: dt.date, seq: int, cuts: list[int], separator: str, prefix: str
) -> None:
    nid = make_national_id(birth, seq)
    spread = "".join(separator + d if i in cuts else d for i, d in enumerate(nid))
    assert holds_national_id(prefix + spread) and caller_id_problem((prefix or "c") + spread) is not None
    assert free_text_problem(f"see {spread}") is not None


def test_random_identifiers_are_almost_never_mistaken_for_national_ids() -> None:
    """The check digits keep ordinary random identifiers usable although separators no longer protect them."""
    rng = random.Random(10)
    values = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(20_000)]
    assert sum(caller_id_problem(v) is not None for v in values) <= 1


@pytest.mark.parametrize("value", ["1f063288bfa648febea6555991657105", "1234567890123", "case-99999999999999"])
def test_long_digit_runs_that_are_no_national_id_may_be_recorded(value: str) -> None:
    assert caller_id_problem(value) is None


def test_the_explanation_never_repeats_the_value() -> None:
    for value in ["=cmd|' /C calc'!A0", valid_nid(), URGENT]:
        assert value not in (caller_id_problem(value) or "")


def test_an_unknown_purpose_is_recorded_as_the_marker() -> None:
    catalogue = {"student-aid"}
    assert recorded_purpose("student-aid", catalogue) == "student-aid"
    assert recorded_purpose(URGENT, catalogue) == UNKNOWN_PURPOSE
    assert recorded_purpose(valid_nid(), catalogue) == UNKNOWN_PURPOSE
    assert recorded_purpose("", catalogue) == ""


@pytest.mark.parametrize("value", ["x" * 201, "line\nbreak", "\u202eevil", f"for {valid_nid()}"])
def test_free_text_is_one_bounded_line_without_national_ids(value: str) -> None:
    assert free_text_problem(value) is not None


def test_free_text_may_hold_ordinary_sentences() -> None:
    assert free_text_problem("Laptop stolen, ticket INC-4711; revoke until re-issued") is None


# --- spreadsheet formulas --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["=1+1", "+352", "-1-1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://e.vil")'])
def test_cells_that_would_start_a_formula_are_prefixed_with_a_quote(value: str) -> None:
    assert csv_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["Caisse pour l'avenir des enfants", "2026-01-01T00:00:00.000Z", "", "a=b"])
def test_ordinary_cells_are_unchanged(value: str) -> None:
    assert csv_cell(value) == value


def test_csv_text_quotes_and_neutralises_every_cell() -> None:
    text = csv_text(("a", "b"), [('=HYPERLINK("x")', 'say "hi", then\nleave')])
    assert text == 'a,b\r\n"\'=HYPERLINK(""x"")","say ""hi"", then\nleave"\r\n'


# --- the pipeline records facts, never the caller's text -------------------------------------------------


async def _refused(stack: Stack, **ctx: Any) -> GatewayError:  # noqa: F811
    op, req = person_request(stack)
    with pytest.raises(GatewayError) as exc:
        await stack.pipeline.exchange(op, req, stack.ctx(**ctx))
    return exc.value


async def test_an_unknown_purpose_is_refused_and_recorded_as_the_marker(stack: Stack) -> None:  # noqa: F811
    err = await _refused(stack, consumer="sandbox", purpose=URGENT)
    assert err.reason is Reason.UNKNOWN_PURPOSE and URGENT not in err.detail
    (row,) = await stack.audit.query(AuditQuery())
    assert (row.record.purpose, row.record.reason) == (UNKNOWN_PURPOSE, "UNKNOWN_PURPOSE")


@pytest.mark.parametrize(
    ("header", "attr", "value"),
    [
        ("x-ai-system", "ai_system", "-1-1"),
        ("x-case-id", "case_id", valid_nid()),
        ("x-officer-id", "officer_id", "=HYPERLINK(\"http://e.vil\")"),
        ("x-consent-id", "consent_id", "x" * 12_000),
        ("x-request-id", "request_id", "@cmd"),
    ],
)
async def test_a_bad_caller_identifier_is_refused_and_not_recorded(
    stack: Stack, header: str, attr: str, value: str  # noqa: F811
) -> None:
    err = await _refused(stack, **{attr: value})
    assert (err.reason, err.field) == (Reason.CALLER_FIELD_INVALID, header) and value not in err.detail
    assert stack.registry.calls == []
    (row,) = await stack.audit.query(AuditQuery())
    assert row.record.reason == "CALLER_FIELD_INVALID"
    assert value not in repr(row.record)


async def test_an_unchecked_consent_id_is_not_recorded(stack: Stack) -> None:  # noqa: F811
    op, req = person_request(stack)   # public-task mandate: no consent is checked
    await stack.pipeline.exchange(op, req, stack.ctx(consent_id="cns_madeup"))
    (row,) = await stack.audit.query(AuditQuery())
    assert row.record.consent_id == ""


def test_a_refused_value_is_not_kept_by_the_check() -> None:
    """The check remembers values (every bulk item repeats the call's ids), but only accepted ones: a
    CheckAccess body's case_id may be 64 KiB (4,096 of them pinned 256 MiB), and a refused value may hold
    a national id."""
    import sys

    long_value = "".join(["dossier-"] + ["9"] * 65_536)   # built at run time: not interned
    with_nid = "".join(["c-", valid_nid()])
    for value in (long_value, with_nid):
        before = sys.getrefcount(value)
        assert caller_id_problem(value) is not None
        assert caller_id_problem(value) is not None
        assert sys.getrefcount(value) == before


def test_ids_the_gateway_gives_are_never_refused_as_caller_ids() -> None:
    """A uuid4 hex holds a valid national id about once in 75,000 draws: such a request id, made for a caller
    that sent none, refused the call CALLER_FIELD_INVALID; a consent id sent back as x-consent-id would be."""
    from gateway.core.caller_text import fresh_caller_id

    unlucky = "722401163372433d992a101e04da831b"   # seen: a uuid4 hex that holds a national id
    assert caller_id_problem(unlucky) is not None
    draws = iter([unlucky, unlucky, "0f" * 16])
    assert fresh_caller_id(draw=lambda: next(draws)) == "0f" * 16
    assert fresh_caller_id("cns_", draw=lambda: "ab" * 16) == "cns_" + "ab" * 16
    assert all(caller_id_problem(fresh_caller_id()) is None for _ in range(2000))


def test_a_request_without_x_request_id_is_never_refused_for_the_id_the_gateway_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.entrypoints._context import call_context

    unlucky = uuid.UUID("722401163372433d992a101e04da831b")
    draws = iter([unlucky, uuid.UUID(int=1)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    ctx = call_context("rest", {"x-purpose": "student-aid"}.get, None)
    assert caller_id_problem(ctx.request_id) is None and ctx.request_id == uuid.UUID(int=1).hex
