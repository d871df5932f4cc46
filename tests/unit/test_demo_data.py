"""The synthetic data set: deterministic, coherent, and with valid identifiers."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from gateway.core.identifiers import national_id_problem, rcs_number_problem
from gateway.demo.data import (
    ADULT_AGE,
    FISCAL_YEARS,
    REFERENCE_DATE,
    CivilStatus,
    DemoData,
    Relationship,
    TaxClass,
    UnionKind,
    generate,
)


@pytest.fixture(scope="module")
def data() -> DemoData:
    return generate(seed=7, persons=5_000)


def test_same_seed_gives_the_same_data() -> None:
    first, second = generate(seed=11, persons=800), generate(seed=11, persons=800)
    assert first.persons == second.persons
    assert first.households == second.households
    assert first.companies == second.companies
    assert first.incomes == second.incomes


def test_another_seed_gives_other_data() -> None:
    assert generate(seed=1, persons=300).persons != generate(seed=2, persons=300).persons


def test_default_data_set_has_ten_thousand_persons_and_fifteen_hundred_companies() -> None:
    data = generate()
    assert (len(data.persons), len(data.companies)) == (10_000, 1_500)


def test_every_national_id_is_valid_and_unique(data: DemoData) -> None:
    ids = [p.national_id for p in data.persons]
    assert [national_id_problem(i) for i in ids] == [None] * len(ids)
    assert len(set(ids)) == len(ids)
    assert all(p.national_id[:8] == p.birth_date.strftime("%Y%m%d") for p in data.persons)


def test_every_rcs_number_is_valid_and_unique(data: DemoData) -> None:
    numbers = [c.rcs_number for c in data.companies]
    assert [rcs_number_problem(n) for n in numbers] == [None] * len(numbers)
    assert all(n.startswith("B") for n in numbers)
    assert len(set(numbers)) == len(numbers)


def test_every_person_belongs_to_exactly_one_household(data: DemoData) -> None:
    members = [m for h in data.households for m in h.members]
    assert sorted(members) == sorted(p.national_id for p in data.persons)
    for p in data.persons:
        household = data.household(p.household_id)
        assert household is not None and p.national_id in household.members


def test_couples_share_their_union_and_address(data: DemoData) -> None:
    expected = {UnionKind.MARRIED: CivilStatus.MARRIED, UnionKind.PARTNERED: CivilStatus.PARTNERED}
    for household in data.households:
        adults = [data.person(i) for i in household.adults]
        assert len(adults) == (1 if household.union is UnionKind.NONE else 2)
        for adult in adults:
            assert adult is not None and adult.address == household.address
            if household.union is not UnionKind.NONE:
                assert adult.civil_status is expected[household.union]
            assert adult.age(REFERENCE_DATE) >= ADULT_AGE


def test_children_are_single_and_younger_than_their_parents(data: DemoData) -> None:
    for household in data.households:
        youngest_parent = max(data.person(i).birth_date for i in household.adults)  # type: ignore[union-attr]
        for child_id in household.children:
            child = data.person(child_id)
            assert child is not None
            assert child.civil_status is CivilStatus.SINGLE
            assert child.birth_date.year >= youngest_parent.year + 18


def test_household_members_are_seen_with_their_relationship(data: DemoData) -> None:
    family = next(h for h in data.households if h.union is UnionKind.MARRIED and h.children)
    parent, spouse = family.adults
    relations = {p.national_id: r for p, r in data.household_members(parent)}
    assert relations[spouse] is Relationship.SPOUSE
    assert all(relations[c] is Relationship.CHILD for c in family.children)
    child_view = {p.national_id: r for p, r in data.household_members(family.children[0])}
    assert child_view[parent] is Relationship.PARENT


def test_nationality_shares_look_like_luxembourg(data: DemoData) -> None:
    count = len(data.persons)
    luxembourgers = sum("LUX" in p.nationalities for p in data.persons) / count
    foreign = Counter(p.nationalities[0] for p in data.persons if "LUX" not in p.nationalities)
    assert 0.48 < luxembourgers < 0.58
    assert 0.11 < foreign["PRT"] / count < 0.17
    assert 0.05 < foreign["FRA"] / count < 0.11
    assert foreign["ITA"] > foreign["DEU"] > 0
    assert any(len(p.nationalities) > 1 for p in data.persons)


def test_addresses_have_luxembourg_postcodes(data: DemoData) -> None:
    postcode = re.compile(r"L-[1-9][0-9]{3}")
    assert all(postcode.fullmatch(p.address.postcode) for p in data.persons)
    assert all(postcode.fullmatch(c.registered_office.postcode) for c in data.companies)


def test_every_adult_has_an_income_record_for_each_adult_fiscal_year(data: DemoData) -> None:
    for person in data.persons:
        for year in FISCAL_YEARS:
            record = data.income(person.national_id, year)
            adult_that_year = year - person.birth_date.year >= ADULT_AGE
            assert (record is not None) == adult_that_year
    assert data.income(data.persons[0].national_id, FISCAL_YEARS[0] - 1) is None


def test_tax_class_follows_the_household(data: DemoData) -> None:
    for household in data.households:
        for national_id in household.adults:
            expected = TaxClass.ONE
            if household.union is not UnionKind.NONE:
                expected = TaxClass.TWO
            elif household.children:
                expected = TaxClass.ONE_A
            records = [data.income(national_id, year) for year in FISCAL_YEARS]
            assert {r.tax_class for r in records if r is not None} == {expected}


def test_income_amounts_are_euros_with_cents(data: DemoData) -> None:
    record = data.incomes[0]
    assert re.fullmatch(r"[0-9]+\.[0-9]{2}", record.amount_text)
    assert str(record.taxable_income) == record.amount_text
    assert record.issued_on.year == record.fiscal_year + 1


def test_companies_are_managed_by_adults_of_the_population(data: DemoData) -> None:
    for company in data.companies:
        assert company.managers
        assert company.registered_on <= REFERENCE_DATE
        for manager in company.managers:
            person = data.person(manager.national_id)
            assert person is not None and person.family_name == manager.family_name
            assert company.registered_on <= manager.appointed_on <= REFERENCE_DATE
    statuses = Counter(c.status.value for c in data.companies)
    assert statuses.most_common(1)[0][0] == "active"


def test_company_lookups_return_none_for_unknown_keys(data: DemoData) -> None:
    company = data.companies[0]
    assert data.company(company.rcs_number) is company
    assert data.company("B1") is None
    assert data.person("0000000000000") is None
