"""The pure decision core: mandates and consents."""

from __future__ import annotations

from consent import Consent, Mandate, Policy, Purpose, allowed_fields, check_consent

SERVICE = "registry.population.v1.PopulationRegistry/GetPerson"
PURPOSE = Purpose("student-aid", {"fr": "a", "de": "b", "en": "c"}, {})


def mandate(**kw: object) -> Mandate:
    base: dict[str, object] = dict(
        id="m1",
        consumer="cedies",
        service=SERVICE,
        purposes=frozenset({"student-aid"}),
        legal_basis="A6-1-e",
        fields=frozenset({"given_names"}),
    )
    base.update(kw)
    return Mandate(**base)  # type: ignore[arg-type]


def decide(mandates: list[Mandate], *, consumer: str = "cedies", purpose: str = "student-aid", now: int = 10) -> str:
    d = Policy.of([PURPOSE], mandates).decide(consumer=consumer, service=SERVICE, purpose=purpose, now_us=now)
    return d.reason


def test_allows_with_a_valid_mandate() -> None:
    assert decide([mandate()]) == ""


def test_refuses_unknown_purpose() -> None:
    assert decide([mandate()], purpose="curiosity") == "UNKNOWN_PURPOSE"


def test_refuses_consumer_without_mandate() -> None:
    assert decide([mandate()], consumer="sandbox") == "NO_MANDATE"


def test_refuses_purpose_the_mandate_does_not_name() -> None:
    other = Purpose("other", {"fr": "", "de": "", "en": ""}, {})
    policy = Policy.of([PURPOSE, other], [mandate()])
    d = policy.decide(consumer="cedies", service=SERVICE, purpose="other", now_us=1)
    assert (d.reason, "student-aid" in d.explanation) == ("NO_MANDATE", True)


def test_refuses_outside_validity_window() -> None:
    assert decide([mandate(valid_from_us=100)], now=5) == "MANDATE_NOT_YET_VALID"
    assert decide([mandate(valid_until_us=100)], now=500) == "MANDATE_EXPIRED"


def test_allowed_fields_unions_names_and_categories() -> None:
    cats = {"given_names": "NAME", "family_name": "NAME", "address": "ADDRESS", "sex": "SEX"}
    m = mandate(fields=frozenset({"sex"}), categories=frozenset({"NAME"}))
    assert allowed_fields(m, cats) == {"given_names", "family_name", "sex"}


def consent(**kw: object) -> Consent:
    base: dict[str, object] = dict(id="c1", subject="s", consumer="cedies", purpose="student-aid", granted_us=1)
    base.update(kw)
    return Consent(**base)  # type: ignore[arg-type]


def check(consents: list[Consent], now: int = 100, consent_id: str = "") -> str:
    return check_consent(
        consents, subject="s", consumer="cedies", purpose="student-aid", now_us=now, consent_id=consent_id
    ).reason


def test_live_consent_allows() -> None:
    assert check([consent()]) == ""


def test_no_consent_requires_one() -> None:
    assert check([]) == "CONSENT_REQUIRED"
    assert check([consent(consumer="other")]) == "CONSENT_REQUIRED"


def test_revoked_expired_and_spent_consents_refuse_with_their_reason() -> None:
    assert check([consent(revoked_us=50)]) == "CONSENT_REVOKED"
    assert check([consent(expires_us=50)]) == "CONSENT_EXPIRED"
    assert check([consent(single_use=True, used_us=20)]) == "CONSENT_SPENT"


def test_a_newer_live_consent_wins_over_a_revoked_one() -> None:
    assert check([consent(revoked_us=50), consent(id="c2", granted_us=60)]) == ""


def test_named_consent_for_someone_else_is_a_mismatch() -> None:
    assert check([consent(subject="other")], consent_id="c1") == "CONSENT_MISMATCH"
