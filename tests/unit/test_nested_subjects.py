"""Nested data subjects: mandates on nested fields, minimisation, and a record for each person disclosed."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import date

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.stores.audit_memory import InMemoryAuditLog
from adapters.stores.consent_memory import InMemoryConsentStore
from consent import Mandate, Policy, Purpose, allowed_fields, category_problem
from gateway._pb.registry.population.v1 import population_pb2
from gateway.core.audit_chain import canonical_bytes, verify_chain
from gateway.core.contracts import Operation, load_operations
from gateway.core.errors import GatewayError, Reason
from gateway.core.identifiers import make_national_id
from gateway.core.minimise import disclosures, minimise, narrow, nested_people
from gateway.core.pipeline import CallContext, ExchangePipeline, Registry, third_party_request_id
from gateway.core.ports import AuditQuery
from gateway.core.pseudonym import Pseudonymiser
from gateway.core.types import AuditReceipt, AuditRecord, Outcome, SubjectRole
from tests.support import TestIssuer, verifier_for
from tests.unit.test_pipeline import FakeRegistry, NullEvents

POP = "registry.population.v1.PopulationRegistry"
BIZ = "registry.business.v1.BusinessRegistry"
NOW_US = 1_767_225_600_000_000  # 2026-01-01
OPS = load_operations([POP, BIZ])
PERSON = OPS[f"{POP}/GetPerson"]
COMPANY = OPS[f"{BIZ}/GetCompany"]
MAIN, SPOUSE, CHILD = (make_national_id(date(1980 + i, 3, 4), 1 + i) for i in range(3))


def mandate(fields: Collection[str] = frozenset(), categories: Collection[str] = frozenset(),
            service: str = PERSON.full_name, consumer: str = "cedies") -> Mandate:  # fmt: skip
    return Mandate("m", consumer, service, frozenset({"student-aid"}), "A6-1-e",
                   fields=frozenset(fields), categories=frozenset(categories))  # fmt: skip


def household_answer() -> population_pb2.Person:
    person = population_pb2.Person(national_id=MAIN, given_names="Anne", family_name="Weber", birth_place="Esch")
    person.birth_date.year = 1980
    for nid, name, year in ((SPOUSE, "Marc", 1981), (CHILD, "Léa", 2010)):
        member = person.household_members.add(national_id=nid, given_names=name, family_name="Weber", relationship=1)
        member.birth_date.year = year
    return person


# --- contracts -----------------------------------------------------------------------------------


def test_contract_names_nested_fields_by_dotted_path_with_their_categories() -> None:
    cats = PERSON.field_categories
    assert (cats["household_members"], cats["household_members.national_id"]) == ("HOUSEHOLD", "IDENTIFIER")
    assert (cats["household_members.given_names"], cats["household_members.birth_date"]) == ("NAME", "BIRTH")
    assert cats["address.street"] == "ADDRESS"   # unmarked: the category of the field that holds it
    assert "birth_date.year" not in cats         # google.type.Date is a leaf


def test_contract_lists_the_nested_subjects_of_each_operation() -> None:
    assert [s.identifier_path for s in PERSON.nested_subjects] == ["household_members.national_id"]
    assert [(s.identifier_path, s.kind, s.format) for s in COMPANY.nested_subjects] == [
        ("managers.national_id", "NATURAL_PERSON", "NATIONAL_ID")
    ]


def test_field_masks_accept_dotted_proto_and_json_paths() -> None:
    assert PERSON.json_paths["householdMembers.givenNames"] == "household_members.given_names"
    assert PERSON.json_paths["household_members.given_names"] == "household_members.given_names"


# --- what a mandate allows ------------------------------------------------------------------------


def test_a_top_level_name_allows_the_whole_sub_message_as_before() -> None:
    assert allowed_fields(mandate({"household_members", "given_names"}), PERSON.field_categories) == {
        "household_members", "given_names"
    }  # fmt: skip


def test_a_dotted_path_allows_only_that_nested_field() -> None:
    allowed = allowed_fields(mandate({"household_members.given_names"}), PERSON.field_categories)
    assert allowed == {"household_members.given_names"}


def test_a_plain_category_never_reaches_inside_a_sub_message() -> None:
    assert allowed_fields(mandate(categories={"NAME"}), PERSON.field_categories) == {"given_names", "family_name"}


def test_a_category_qualified_by_its_holder_reaches_inside() -> None:
    allowed = allowed_fields(mandate(categories={"managers.NAME"}), COMPANY.field_categories)
    assert allowed == {"managers.given_names", "managers.family_name"}


def test_a_path_held_by_an_allowed_field_is_named_once_at_the_top() -> None:
    m = mandate({"household_members", "household_members.national_id"}, {"household_members.NAME"})
    assert allowed_fields(m, PERSON.field_categories) == {"household_members"}


@pytest.mark.parametrize(
    ("category", "problem"),
    [
        ("COMPANY", ""),
        ("managers.NAME", ""),
        ("NAME", "no field of registry.business.v1.Company has category 'NAME'"),   # only the managers have one
        ("SHOE", "no field of registry.business.v1.Company has category 'SHOE'"),
        ("shoes.NAME", "'shoes' is not a field of registry.business.v1.Company"),
        ("managers.INCOME", "no field inside 'managers' of registry.business.v1.Company has category 'INCOME'"),
    ],
)
def test_category_problems_name_what_is_wrong(category: str, problem: str) -> None:
    assert category_problem(category, COMPANY.field_categories, "registry.business.v1.Company") == problem


def test_config_names_the_mandate_key_of_an_unknown_nested_field() -> None:
    from gateway.config import MandateSection, _check_mandate  # the rule the loader applies to each mandate

    fields = ["household_members.given_names", "household_members.shoe_size"]
    m = MandateSection(id="x", consumer="cedies", service=PERSON.full_name, purposes=["student-aid"],
                       legal_basis="A6-1-e", fields=fields)  # fmt: skip
    problems = _check_mandate(0, m, {"cedies"}, {"student-aid"}, {PERSON.full_name: PERSON})
    assert problems == [
        "mandates[0].fields: 'household_members.shoe_size' is not a field of registry.population.v1.Person"
    ]


# --- minimisation -----------------------------------------------------------------------------------


def test_minimise_keeps_only_the_allowed_nested_field_of_every_element() -> None:
    answer = household_answer()
    left = minimise(answer, frozenset({"given_names", "household_members.given_names"}))
    assert left == ("given_names", "household_members.given_names")
    assert [(m.national_id, m.given_names, m.HasField("birth_date")) for m in answer.household_members] == [
        ("", "Marc", False), ("", "Léa", False)
    ]  # fmt: skip
    assert not answer.national_id and not answer.birth_place


def test_minimise_clears_a_sub_message_of_which_nothing_allowed_is_set() -> None:
    answer = population_pb2.Person(given_names="Anne")
    answer.address.street = "rue de l'Alzette"
    assert minimise(answer, frozenset({"given_names", "address.postcode"})) == ("given_names",)
    assert not answer.HasField("address")


def test_a_field_mask_narrows_allowed_paths_and_never_widens_them() -> None:
    allowed = {"household_members", "given_names"}
    assert narrow(allowed, ["household_members.given_names", "birth_place"]) == {"household_members.given_names"}
    assert narrow({"household_members.given_names"}, ["household_members"]) == {"household_members.given_names"}


def _leaf_paths(message: Message, prefix: str = "") -> Iterator[str]:
    """Every set leaf, dotted, walking into every message (google.type.Date too)."""
    for fd, value in message.ListFields():
        path = prefix + fd.name
        if fd.message_type is None:
            yield path
            continue
        for element in value if fd.label == FieldDescriptor.LABEL_REPEATED else (value,):
            yield from _leaf_paths(element, path + ".")


def _covered(path: str, allowed: frozenset[str]) -> bool:
    parts = path.split(".")
    return any(".".join(parts[:i]) in allowed for i in range(1, len(parts) + 1))


_words = st.text(alphabet="abcdefghij", min_size=0, max_size=4)
_members = st.lists(
    st.fixed_dictionaries({"national_id": _words, "given_names": _words, "family_name": _words,
                           "relationship": st.integers(0, 5)}),
    max_size=3,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    members=_members,
    names=st.tuples(_words, _words),
    street=_words,
    years=st.lists(st.integers(0, 2020), max_size=3),
    allowed=st.frozensets(st.sampled_from(sorted(PERSON.field_categories))),
)
def test_nothing_outside_the_allowed_paths_survives_and_everything_allowed_does(
    members: list[dict[str, object]], names: tuple[str, str], street: str, years: list[int], allowed: frozenset[str]
) -> None:
    answer = population_pb2.Person(given_names=names[0], family_name=names[1], birth_place="Esch",
                                    sex=population_pb2.SEX_FEMALE)
    answer.address.street = street
    for i, m in enumerate(members):
        member = answer.household_members.add(**m)
        if i < len(years) and years[i]:
            member.birth_date.year = years[i]
    before = set(_leaf_paths(answer))
    left = minimise(answer, allowed)
    after = set(_leaf_paths(answer))
    assert all(_covered(p, allowed) for p in after)
    assert after == {p for p in before if _covered(p, allowed)}
    assert set(left) <= allowed and all(_covered(p, frozenset(left)) for p in after)   # the record names what left


# --- who else an answer discloses ---------------------------------------------------------------------


def test_each_member_is_told_only_the_fields_of_theirs_that_left() -> None:
    answer = household_answer()
    people = nested_people(answer, PERSON.nested_subjects)
    minimise(answer, frozenset({"given_names", "household_members.given_names", "household_members.birth_date"}))
    found = disclosures(answer, people)
    assert [(d.identifier, d.path, d.fields) for d in found] == [
        (SPOUSE, "household_members", ("given_names", "birth_date")),
        (CHILD, "household_members", ("given_names", "birth_date")),
    ]


def test_nobody_is_told_when_none_of_their_data_left() -> None:
    answer = household_answer()
    people = nested_people(answer, PERSON.nested_subjects)
    minimise(answer, frozenset({"given_names"}))
    assert disclosures(answer, people) == ()


# --- the pipeline: one record per person, before the answer leaves ------------------------------------


class FlakyAudit(InMemoryAuditLog):
    """Fails the n-th append (1-based)."""

    def __init__(self, fail_at: int = 0) -> None:
        super().__init__()
        self.fail_at, self.appends = fail_at, 0

    async def append(self, record: AuditRecord) -> AuditReceipt:
        self.appends += 1
        if self.appends == self.fail_at:
            raise GatewayError(Reason.AUDIT_UNAVAILABLE, "disk full")
        return await super().append(record)


@dataclass
class Stack:
    pipeline: ExchangePipeline
    audit: FlakyAudit
    issuer: TestIssuer
    pseudo: Pseudonymiser

    def ctx(self, **kw: object) -> CallContext:
        base: dict[str, object] = dict(protocol="rest", token=self.issuer.token("cedies"), purpose="student-aid",
                                       request_id="req-1", trace_id="t" * 32, case_id="dossier-42",
                                       consent_id="")  # fmt: skip
        return CallContext(**{**base, **kw})  # type: ignore[arg-type]

    async def records(self) -> list[AuditRecord]:
        return [s.record for s in await self.audit.query(AuditQuery(limit=100))]


def make_stack(fields: set[str], fail_at: int = 0) -> Stack:
    purposes = [Purpose("student-aid", {"fr": "", "de": "", "en": ""}, {})]
    policy = Policy.of(purposes, [mandate(fields)])
    issuer = TestIssuer()
    verifier = verifier_for([issuer], {(issuer.id, "cedies"): "cedies"})
    audit, events, pseudo = FlakyAudit(fail_at), NullEvents(), Pseudonymiser(b"k" * 32)
    registry = FakeRegistry({"GetPerson": household_answer()})
    pipeline = ExchangePipeline(
        verifier=verifier, policy=lambda: policy, consents=InMemoryConsentStore(),
        registries={POP: Registry("rnpp", registry, 1.0)}, audit=audit, pseudonymise=pseudo,
        security=events, observer=events, clock_us=lambda: NOW_US,
    )  # fmt: skip
    return Stack(pipeline, audit, issuer, pseudo)


async def lookup(stack: Stack, op: Operation = PERSON, **ctx: object) -> Message:
    return await stack.pipeline.exchange(op, op.request_cls(national_id=MAIN), stack.ctx(**ctx))


async def test_a_household_lookup_is_recorded_in_each_members_history() -> None:
    stack = make_stack({"given_names", "household_members.given_names", "household_members.birth_date"})
    await lookup(stack)
    main, *others = await stack.records()
    assert (main.subject, main.fields, main.subject_role) == (
        stack.pseudo(MAIN), ("given_names", "household_members.given_names", "household_members.birth_date"),
        SubjectRole.DATA_SUBJECT,
    )  # fmt: skip
    assert [(r.subject, r.fields, r.subject_role) for r in others] == [
        (stack.pseudo(SPOUSE), ("given_names", "birth_date"), SubjectRole.THIRD_PARTY),
        (stack.pseudo(CHILD), ("given_names", "birth_date"), SubjectRole.THIRD_PARTY),
    ]
    for r in others:   # the same exchange, seen from the member's side
        assert (r.consumer, r.service, r.purpose, r.legal_basis, r.outcome) == (
            main.consumer, main.service, main.purpose, main.legal_basis, Outcome.OK
        )  # fmt: skip


async def test_a_members_record_shares_no_id_with_the_main_subjects_record() -> None:
    """Issue 10 review, finding 10: two citizens' proofs cannot be matched by request or trace id."""
    stack = make_stack({"given_names", "household_members.given_names"})
    await lookup(stack)
    main, *others = await stack.records()
    assert others and main.request_id == "req-1" and main.trace_id == "t" * 32
    for r in others:
        assert r.trace_id == "" and r.request_id.startswith("tp-") and "req-1" not in r.request_id
        assert r.request_id == third_party_request_id(stack.pseudo, "req-1", r.subject)
    assert len({r.request_id for r in others}) == len(others)


async def test_a_members_record_holds_nothing_that_points_at_the_person_looked_up() -> None:
    stack = make_stack({"household_members"})
    await lookup(stack)
    _, *others = await stack.records()
    for r in others:
        text = canonical_bytes(1, r).decode()
        assert stack.pseudo(MAIN) not in text and MAIN not in text and "dossier-42" not in text
        assert r.extra == {"subject_role": "third_party", "disclosed_in": "household_members"}


async def test_a_member_whose_identifier_was_minimised_away_is_still_told() -> None:
    stack = make_stack({"household_members.given_names"})
    answer = await lookup(stack)
    assert isinstance(answer, population_pb2.Person)
    assert [m.national_id for m in answer.household_members] == ["", ""]
    assert [r.subject for r in (await stack.records())[1:]] == [stack.pseudo(SPOUSE), stack.pseudo(CHILD)]


async def test_a_refused_lookup_tells_no_third_party() -> None:
    stack = make_stack({"household_members"})
    with pytest.raises(GatewayError):
        await lookup(stack, purpose="tax-audit")
    assert [r.outcome for r in await stack.records()] == [Outcome.REFUSED]


async def test_the_records_of_one_exchange_are_committed_together() -> None:
    stack = make_stack({"household_members"})
    await lookup(stack)
    assert (len(await stack.records()), stack.audit.commits) == (3, 1)


@pytest.mark.parametrize("fail_at", [1, 2, 3])
async def test_no_data_leaves_when_any_record_of_the_exchange_fails(fail_at: int) -> None:
    stack = make_stack({"household_members"}, fail_at=fail_at)
    with pytest.raises(GatewayError) as caught:
        await lookup(stack)
    assert caught.value.reason == Reason.AUDIT_UNAVAILABLE


async def test_third_party_records_chain_like_any_other_and_older_records_keep_their_form() -> None:
    stack = make_stack({"household_members"})
    await lookup(stack)
    stored = list(await stack.audit.query(AuditQuery(limit=100)))
    assert verify_chain(stored).ok and len(stored) == 3
    assert canonical_bytes(1, stored[0].record).endswith(b",{}]")   # no role written for the data subject


def test_the_admin_api_accepts_qualified_categories_and_names_a_wrong_one() -> None:
    """``household_members.NAME`` is as valid at run time as in the configuration file."""
    from gateway.application.admin import mandate_problems

    ops = {PERSON.full_name: PERSON}
    consumers, purposes = {"cedies"}, {"student-aid"}
    good = mandate(categories={"household_members.NAME"})
    assert [p for p in mandate_problems(good, consumers=consumers, purposes=purposes, operations=ops)
            if p[0] == "categories"] == []  # fmt: skip
    bad = mandate(categories={"household_members.INCOME"})
    problems = mandate_problems(bad, consumers=consumers, purposes=purposes, operations=ops)
    assert [f for f, _ in problems].count("categories") == 1
