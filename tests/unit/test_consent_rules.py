"""Mandate limits, explicit requests, consent states and explanations: the pure core."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consent import (
    Consent,
    Limit,
    Mandate,
    Policy,
    Purpose,
    check_consent,
    consent_status,
    explain_access,
    limit_error,
    limit_problem,
    mandate_from_dict,
    mandate_to_dict,
)

NOW = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1e6)
SERVICE = "registry.tax.v1.TaxRegistry/GetIncomeCertificate"
CATS = {"national_id": "IDENTIFIER", "fiscal_year": "TAX_STATUS", "taxable_income": "INCOME"}
PURPOSE = Purpose("student-aid", {"fr": "Aide", "de": "Beihilfe", "en": "Aid"}, {})


def mandate(**kw: object) -> Mandate:
    base: dict[str, object] = dict(
        id="m",
        consumer="cedies",
        service=SERVICE,
        purposes=frozenset({"student-aid"}),
        legal_basis="A6-1-e",
        categories=frozenset({"INCOME", "TAX_STATUS"}),
    )
    base.update(kw)
    return Mandate(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("limit", "value", "ok"),
    [
        (Limit("fiscal_year", "year_offset", ("0", "0")), 2026, True),
        (Limit("fiscal_year", "year_offset", ("0", "0")), 2025, False),
        (Limit("fiscal_year", "year_offset", ("-2", "-1")), 2024, True),
        (Limit("fiscal_year", "year_offset", ("-2", "-1")), 2026, False),
        (Limit("fiscal_year", "min", ("2020",)), 2019, False),
        (Limit("fiscal_year", "max", ("2020",)), 2020, True),
        (Limit("region", "in", ("north", "south")), "south", True),
        (Limit("region", "not_in", ("north",)), "north", False),
        (Limit("region", "eq", ("north",)), "north", True),
        (Limit("fiscal_year", "min", ("2020",)), "abc", False),
    ],
)
def test_limits_are_evaluated_on_the_named_request_field(limit: Limit, value: object, ok: bool) -> None:
    field = limit.field
    assert (limit_problem(limit, {field: value}, NOW) == "") is ok


def test_a_limit_on_a_missing_field_refuses() -> None:
    assert limit_problem(Limit("fiscal_year", "eq", ("2026",)), {}, NOW) == "fiscal_year must equal 2026"


@pytest.mark.parametrize(
    "limit",
    [
        Limit("f", "between", ("1",)),
        Limit("f", "eq", ()),
        Limit("f", "min", ("x",)),
        Limit("", "eq", ("1",)),
        Limit("f", "year_offset", ("1",)),
    ],
)
def test_malformed_limits_are_reported(limit: Limit) -> None:
    assert limit_error(limit)


def test_current_fiscal_year_limit_refuses_other_years_with_mandate_limit() -> None:
    policy = Policy.of([PURPOSE], [mandate(limits=(Limit("fiscal_year", "year_offset", ("0", "0")),))])
    kw = dict(consumer="cedies", service=SERVICE, purpose="student-aid", now_us=NOW)
    assert policy.decide(**kw, request_fields={"fiscal_year": 2026}).allowed  # type: ignore[arg-type]
    refused = policy.decide(**kw, request_fields={"fiscal_year": 2024})  # type: ignore[arg-type]
    assert (refused.reason, "fiscal_year must be 2026" in refused.explanation) == ("MANDATE_LIMIT", True)


def test_a_second_mandate_without_the_limit_still_allows() -> None:
    limited = mandate(id="a", limits=(Limit("fiscal_year", "eq", ("2026",)),))
    policy = Policy.of([PURPOSE], [limited, mandate(id="b")])
    d = policy.decide(
        consumer="cedies", service=SERVICE, purpose="student-aid", now_us=NOW, request_fields={"fiscal_year": 1}
    )
    assert d.allowed and d.mandate is not None and d.mandate.id == "b"


def test_consent_required_flag_makes_a_public_task_mandate_need_consent() -> None:
    assert not mandate().needs_consent
    assert mandate(consent_required=True).needs_consent and mandate(explicit_request=True).needs_consent


def consent(**kw: object) -> Consent:
    base: dict[str, object] = dict(id="c", subject="s", consumer="cedies", purpose="student-aid", granted_us=1)
    base.update(kw)
    return Consent(**base)  # type: ignore[arg-type]


def check(cs: list[Consent], **kw: object) -> str:
    return check_consent(cs, subject="s", consumer="cedies", purpose="student-aid", now_us=NOW, **kw).reason  # type: ignore[arg-type]


def test_explicit_request_covers_only_its_procedure() -> None:
    req = consent(procedure_id="case-1")
    assert check([req], case_id="case-1") == ""
    assert check([req], case_id="case-2") == "CONSENT_MISMATCH"
    assert check([req]) == "CONSENT_MISMATCH"


def test_explicit_only_mandates_ignore_plain_consents() -> None:
    assert check([consent()], explicit_only=True) == "CONSENT_REQUIRED"
    assert check([consent(procedure_id="p")], explicit_only=True, case_id="p") == ""


def test_consent_narrower_than_the_data_asked_is_a_mismatch() -> None:
    assert (
        check([consent(categories=frozenset({"INCOME"}))], needed_categories=frozenset({"INCOME", "TAX_STATUS"}))
        == "CONSENT_MISMATCH"
    )


@pytest.mark.parametrize(
    ("kw", "status"),
    [
        ({}, "ACTIVE"),
        ({"revoked_us": 5}, "REVOKED"),
        ({"expires_us": 5}, "EXPIRED"),
        ({"single_use": True, "used_us": 5}, "SPENT"),
        ({"revoked_us": NOW + 5}, "ACTIVE"),
    ],
)
def test_consent_status(kw: dict, status: str) -> None:  # type: ignore[type-arg]
    assert consent_status(consent(**kw), NOW) == status


def test_mandate_documents_round_trip() -> None:
    m = mandate(
        limits=(Limit("fiscal_year", "year_offset", ("-1", "0")),),
        valid_from_us=NOW - NOW % 86_400_000_000,
        consent_required=True,
        fields=frozenset({"national_id"}),
    )
    assert mandate_from_dict(mandate_to_dict(m)) == m


# --- explanations ---------------------------------------------------------------------------------------


def explain(mandates: list[Mandate], consents: list[Consent], **kw: object) -> object:
    args: dict[str, object] = dict(
        consumer="cedies", service=SERVICE, purpose="student-aid", subject="s", now_us=NOW, field_categories=CATS
    )
    args.update(kw)
    return explain_access(Policy.of([PURPOSE], mandates), consents, **args)  # type: ignore[arg-type]


def test_explanation_lists_fields_and_the_refusing_consent_rule() -> None:
    e = explain([mandate(legal_basis="A6-1-a")], [consent(revoked_us=5)])
    assert (e.allowed, e.reason, e.fields) == (False, "CONSENT_REVOKED", ("fiscal_year", "taxable_income"))  # type: ignore[attr-defined]
    assert e.explanation.endswith("The consent was revoked.")  # type: ignore[attr-defined]


def test_explanation_of_an_allowed_lookup_names_mandate_and_basis() -> None:
    e = explain([mandate()], [], subject="")
    assert e.allowed and "Mandate 'm' allows it under A6-1-e." in e.explanation  # type: ignore[attr-defined]


def test_explanation_reports_limits_it_could_not_check() -> None:
    e = explain([mandate(limits=(Limit("fiscal_year", "eq", ("2026",)),))], [])
    assert e.allowed and "fiscal_year must equal 2026" in e.explanation  # type: ignore[attr-defined]


def test_explanation_of_a_consent_mandate_without_subject_refuses() -> None:
    e = explain([mandate(legal_basis="A6-1-a")], [], subject="")
    assert (e.allowed, e.reason) == (False, "CONSENT_REQUIRED")  # type: ignore[attr-defined]
