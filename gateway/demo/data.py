"""A deterministic synthetic data set: persons in households, companies and income records.

``generate(seed, persons)`` always returns the same data for the same arguments. It
looks right to a Luxembourg civil servant (names, nationality shares, communes and
postcodes, RCS numbers, tax classes) but describes nobody. Dates are stated as of
``REFERENCE_DATE``, never read from the clock.

Rules kept coherent across the set:

* every adult (18 or more at the end of a fiscal year) has one income record for each
  fiscal year of ``FISCAL_YEARS`` in which they were an adult;
* tax class: ``2`` for a married or partnered adult, ``1a`` for an adult living alone
  with children, ``1`` otherwise (the same class for every year);
* a married or partnered person lives with their spouse or partner, both with the
  same civil status; children are single; registered names are birth names.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import random
from collections.abc import Sequence
from typing import Generic, TypeVar

from gateway.core.identifiers import make_national_id
from gateway.demo import _tables as tables
from gateway.demo._model import (
    ADULT_AGE,
    FISCAL_YEARS,
    REFERENCE_DATE,
    Address,
    CivilStatus,
    Company,
    CompanyStatus,
    DemoData,
    Household,
    IncomeRecord,
    LegalForm,
    Manager,
    Person,
    Relationship,
    Sex,
    TaxClass,
    UnionKind,
    relationship_between,
    tax_class_for,
)

__all__ = [
    "ADULT_AGE",
    "FISCAL_YEARS",
    "REFERENCE_DATE",
    "Address",
    "CivilStatus",
    "Company",
    "CompanyStatus",
    "DemoData",
    "Household",
    "IncomeRecord",
    "LegalForm",
    "Manager",
    "Person",
    "Relationship",
    "Sex",
    "TaxClass",
    "UnionKind",
    "generate",
    "relationship_between",
    "tax_class_for",
]

_T = TypeVar("_T")

_HOUSEHOLD_KINDS = (("single", 34.0), ("couple", 26.0), ("family", 30.0), ("single_parent", 10.0))
_NATURALISED_SHARE = 0.15  # foreign-born residents who also hold Luxembourg nationality
_BORN_HERE_SHARE = 0.30  # foreign nationals born in Luxembourg

# RCS "B" numbers grow with time: anchors (number, registration date) to interpolate between.
_RCS_NUMBERS = (10_000, 75_000, 150_000, 240_000, 296_000)
_RCS_DATES = (
    dt.date(1985, 1, 1),
    dt.date(2000, 3, 1),
    dt.date(2009, 11, 1),
    dt.date(2019, 12, 1),
    dt.date(2026, 6, 1),
)
# Legal forms that did not exist before a date.
_FORM_INTRODUCED = {
    LegalForm.SARLS: dt.date(2017, 1, 1),
    LegalForm.SCSP: dt.date(2013, 7, 23),
    LegalForm.SE: dt.date(2004, 10, 8),
}
_FORM_SUFFIX = {
    LegalForm.SA: "S.A.",
    LegalForm.SARL: "S.à r.l.",
    LegalForm.SARLS: "S.à r.l.-S",
    LegalForm.SCS: "S.C.S.",
    LegalForm.SCSP: "SCSp",
    LegalForm.SCA: "S.C.A.",
    LegalForm.SE: "SE",
    LegalForm.SNC: "S.e.n.c.",
    LegalForm.SC: "S.C.",
}
_CAPITAL_EUR = {
    LegalForm.SA: (31_000, 50_000, 100_000, 250_000, 500_000, 1_250_000),
    LegalForm.SARL: (12_000, 12_500, 15_000, 20_000, 25_000, 50_000),
    LegalForm.SARLS: (1, 100, 500, 1_000, 2_500, 5_000),
    LegalForm.SCS: (12_000, 31_000, 100_000),
    LegalForm.SCSP: (1_000, 12_000, 20_000, 100_000),
    LegalForm.SCA: (31_000, 40_000, 100_000),
    LegalForm.SE: (120_000, 150_000, 500_000),
    LegalForm.SNC: (2_500, 5_000, 10_000),
    LegalForm.SC: (5_000, 25_000, 100_000),
}
_LUF_SARL_CAPITAL_CENTS = 1_239_468  # 500,000 LUF, the old SARL minimum, converted to EUR
_NAME_QUALIFIERS = ("", "", " Luxembourg", " International", " Europe", " Group")


class _Weighted(Generic[_T]):
    """A weighted choice with the cumulative weights computed once."""

    def __init__(self, pairs: Sequence[tuple[_T, float]]) -> None:
        self._values = [value for value, _ in pairs]
        self._cumulative = list(itertools.accumulate(weight for _, weight in pairs))

    def pick(self, rng: random.Random) -> _T:
        return self._values[bisect.bisect(self._cumulative, rng.random() * self._cumulative[-1])]


class _Places:
    """Addresses with postcodes that match their locality, and places of birth."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._commune = _Weighted([(commune, commune[3]) for commune in tables.COMMUNES])

    def address(self) -> Address:
        rng = self._rng
        commune, localities, streets, _ = self._commune.pick(rng)
        locality, first, last = rng.choice(localities)
        index = rng.randrange(len(streets))
        # A street keeps the same postcode wherever it is drawn.
        postcode = first + (index * 37 + len(locality)) % (last - first + 1)
        number = f"{rng.randint(1, 180)}{'A' if rng.random() < 0.06 else ''}"
        return Address(number, streets[index], f"L-{postcode:04d}", locality, commune)

    def birth_place(self, abroad_in: str | None) -> str:
        if abroad_in is None:
            return self._rng.choice(tables.BIRTH_PLACES["LUX"])
        return f"{self._rng.choice(tables.BIRTH_PLACES[abroad_in])} ({tables.COUNTRY_NAMES[abroad_in]})"


class _Population:
    """Builds households one by one until the requested number of persons is reached."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._nationality = _Weighted(tables.NATIONALITY_WEIGHTS)
        self._kind = _Weighted(_HOUSEHOLD_KINDS)
        self._places = _Places(rng)
        self._used_ids: set[str] = set()
        self._persons: list[Person] = []
        self._households: list[Household] = []

    def build(self, count: int) -> tuple[tuple[Person, ...], tuple[Household, ...]]:
        while len(self._persons) < count:
            self._household(count - len(self._persons))
        return tuple(self._persons), tuple(self._households)

    def _household(self, room: int) -> None:
        rng = self._rng
        kind = self._kind.pick(rng)
        couple = kind in ("couple", "family")
        kids = rng.choice((1, 1, 1, 2, 2, 2, 3)) if kind in ("family", "single_parent") else 0
        if 1 + couple + kids > room:
            kind, couple, kids = "single", False, 0
        hid, address = f"HH{len(self._households) + 1:06d}", self._places.address()
        union = UnionKind.NONE
        if couple:
            union = UnionKind.MARRIED if rng.random() < 0.75 else UnionKind.PARTNERED
        adults = self._couple(hid, address, union, kids > 0) if couple else [self._lone(hid, address, kind)]
        children = self._children(hid, address, adults, kids)
        self._persons.extend(adults + children)
        self._households.append(
            Household(
                hid,
                address,
                tuple(p.national_id for p in adults),
                tuple(c.national_id for c in children),
                union,
            )
        )

    def _lone(self, hid: str, address: Address, kind: str) -> Person:
        rng = self._rng
        if kind == "single_parent":
            age, sex = rng.randint(25, 55), Sex.FEMALE if rng.random() < 0.8 else Sex.MALE
            civil = _Weighted(
                ((CivilStatus.SINGLE, 45), (CivilStatus.DIVORCED, 45), (CivilStatus.WIDOWED, 10))
            )
        else:
            age, sex = int(rng.triangular(ADULT_AGE, 95, 38)), rng.choice((Sex.FEMALE, Sex.MALE))
            civil = _lone_civil_status(age)
        return self._adult(hid, address, age, sex, civil.pick(rng), self._nationality.pick(rng))

    def _couple(self, hid: str, address: Address, union: UnionKind, with_kids: bool) -> list[Person]:
        rng = self._rng
        civil = CivilStatus.MARRIED if union is UnionKind.MARRIED else CivilStatus.PARTNERED
        age = rng.randint(25, 56) if with_kids else int(rng.triangular(22, 90, 55))
        partner_age = max(25 if with_kids else ADULT_AGE, age + rng.randint(-6, 6))
        sex = rng.choice((Sex.FEMALE, Sex.MALE))
        partner_sex = sex if rng.random() < 0.03 else _other_sex(sex)
        origin = self._nationality.pick(rng)
        partner_origin = origin if rng.random() < 0.7 else self._nationality.pick(rng)
        return [
            self._adult(hid, address, age, sex, civil, origin),
            self._adult(hid, address, partner_age, partner_sex, civil, partner_origin),
        ]

    def _adult(
        self, hid: str, address: Address, age: int, sex: Sex, civil: CivilStatus, origin: str
    ) -> Person:
        rng = self._rng
        nationalities: tuple[str, ...] = (origin,)
        if origin != "LUX" and rng.random() < _NATURALISED_SHARE:
            nationalities = ("LUX", origin)
        born_here = origin == "LUX" or rng.random() < _BORN_HERE_SHARE
        birth = dt.date(REFERENCE_DATE.year - age - 1, 1, 1) + dt.timedelta(days=rng.randrange(365))
        culture = tables.CULTURE_OF[origin]
        family_name = rng.choice(tables.NAMES[culture][0])
        return self._person(
            hid,
            address,
            birth,
            sex,
            civil,
            nationalities,
            culture,
            family_name,
            None if born_here else origin,
        )

    def _children(self, hid: str, address: Address, parents: list[Person], count: int) -> list[Person]:
        rng = self._rng
        first = max(max(p.birth_date.year for p in parents) + 20, REFERENCE_DATE.year - 24)
        last = min(min(p.birth_date.year for p in parents) + 45, REFERENCE_DATE.year - 1)
        fathers = [p for p in parents if p.sex is Sex.MALE]
        family_name = (fathers or parents)[0].family_name
        nationalities = _child_nationalities(parents)
        origin = parents[0].nationalities[-1]
        children = []
        for _ in range(count if first <= last else 0):
            birth = dt.date(rng.randint(first, last), 1, 1) + dt.timedelta(days=rng.randrange(365))
            culture = tables.CULTURE_OF[rng.choice(parents).nationalities[-1]]
            abroad = origin if origin != "LUX" and rng.random() < 0.15 else None
            children.append(
                self._person(
                    hid,
                    address,
                    birth,
                    rng.choice((Sex.FEMALE, Sex.MALE)),
                    CivilStatus.SINGLE,
                    nationalities,
                    culture,
                    family_name,
                    abroad,
                )
            )
        return children

    def _person(
        self,
        hid: str,
        address: Address,
        birth: dt.date,
        sex: Sex,
        civil: CivilStatus,
        nationalities: tuple[str, ...],
        culture: str,
        family_name: str,
        abroad_in: str | None,
    ) -> Person:
        return Person(
            national_id=self._national_id(birth),
            given_names=_given_names(self._rng, culture, sex),
            family_name=family_name,
            birth_date=birth,
            birth_place=self._places.birth_place(abroad_in),
            sex=sex,
            nationalities=nationalities,
            address=address,
            civil_status=civil,
            household_id=hid,
        )

    def _national_id(self, birth: dt.date) -> str:
        while True:
            national_id = make_national_id(birth, self._rng.randrange(1000))
            if national_id not in self._used_ids:
                self._used_ids.add(national_id)
                return national_id


def _other_sex(sex: Sex) -> Sex:
    return Sex.MALE if sex is Sex.FEMALE else Sex.FEMALE


def _lone_civil_status(age: int) -> _Weighted[CivilStatus]:
    if age >= 70:
        return _Weighted(((CivilStatus.WIDOWED, 45), (CivilStatus.DIVORCED, 15), (CivilStatus.SINGLE, 40)))
    if age >= 40:
        return _Weighted(((CivilStatus.DIVORCED, 30), (CivilStatus.WIDOWED, 5), (CivilStatus.SINGLE, 65)))
    return _Weighted(((CivilStatus.SINGLE, 90), (CivilStatus.DIVORCED, 10)))


def _child_nationalities(parents: Sequence[Person]) -> tuple[str, ...]:
    """Nationality by descent: Luxembourg first if a parent holds it, then the parents' others."""
    held = [n for p in parents for n in p.nationalities]
    ordered = (["LUX"] if "LUX" in held else []) + [n for n in held if n != "LUX"]
    return tuple(dict.fromkeys(ordered))


def _given_names(rng: random.Random, culture: str, sex: Sex) -> str:
    _, female, male = tables.NAMES[culture]
    pool = female if sex is Sex.FEMALE else male
    first = rng.choice(pool)
    second = rng.choice(pool) if rng.random() < 0.25 else first
    return first if second == first else f"{first} {second}"


def _incomes(
    rng: random.Random, persons: Sequence[Person], households: Sequence[Household]
) -> tuple[IncomeRecord, ...]:
    by_id = {h.household_id: h for h in households}
    records: list[IncomeRecord] = []
    for person in persons:
        records.extend(_income_history(rng, person, by_id[person.household_id]))
    return tuple(records)


def _income_history(rng: random.Random, person: Person, household: Household) -> list[IncomeRecord]:
    """One record per fiscal year in which the person was an adult at the end of the year."""
    first_year = max(FISCAL_YEARS[0], person.birth_date.year + ADULT_AGE)
    tax_class = tax_class_for(household, person.national_id)
    base, growth = _base_income(rng, person, household), rng.uniform(1.0, 1.06)
    records = []
    for year in range(first_year, FISCAL_YEARS[-1] + 1):
        amount = base * growth ** (year - FISCAL_YEARS[0]) * rng.uniform(0.97, 1.03)
        issued = dt.date(year + 1, 2, 1) + dt.timedelta(days=rng.randrange(150))
        records.append(IncomeRecord(person.national_id, year, round(amount * 100), tax_class, issued))
    return records


def _base_income(rng: random.Random, person: Person, household: Household) -> float:
    """Taxable income for the first fiscal year, in EUR."""
    age = FISCAL_YEARS[0] - person.birth_date.year
    if person.national_id in household.children:
        return rng.uniform(0.0, 14_000.0)  # students' jobs
    if age >= 65:
        return rng.lognormvariate(math.log(38_000), 0.35)  # pensions
    return max(14_000.0, rng.lognormvariate(math.log(34_000 if age < 25 else 52_000), 0.5))


class _Companies:
    """Builds companies with increasing RCS numbers, managed by adults of the population."""

    def __init__(self, rng: random.Random, persons: Sequence[Person]) -> None:
        self._rng = rng
        self._places = _Places(rng)
        self._officers = [p for p in persons if p.age(REFERENCE_DATE) >= 25] or list(persons)
        self._names: set[str] = set()
        self._status = _Weighted(
            ((CompanyStatus.ACTIVE, 90), (CompanyStatus.IN_LIQUIDATION, 5), (CompanyStatus.STRUCK_OFF, 5))
        )

    def build(self, count: int) -> tuple[Company, ...]:
        numbers = sorted(self._rng.sample(range(_RCS_NUMBERS[0], _RCS_NUMBERS[-1]), count))
        return tuple(self._company(number) for number in numbers)

    def _company(self, number: int) -> Company:
        rng = self._rng
        registered_on = _registration_date(rng, number)
        pattern, nace, forms = rng.choice(tables.COMPANY_PATTERNS)
        form = _legal_form(forms, registered_on, rng)
        roles = _roles(rng, form)
        officers = rng.sample(self._officers, min(len(roles), len(self._officers)))
        managers = tuple(
            Manager(p.national_id, p.given_names, p.family_name, role, _appointment(rng, p, registered_on))
            for p, role in zip(officers, roles, strict=False)
        )
        return Company(
            rcs_number=f"B{number}",
            name=self._name(pattern, form, officers[0].family_name),
            legal_form=form,
            registered_office=self._places.address(),
            status=self._status.pick(rng),
            managers=managers,
            nace_codes=nace[: rng.randint(1, len(nace))],
            share_capital_cents=_share_capital(rng, form, registered_on),
            registered_on=registered_on,
        )

    def _name(self, pattern: str, form: LegalForm, family_name: str) -> str:
        for qualifier in _NAME_QUALIFIERS:
            base = pattern.format(name=family_name, word=self._rng.choice(tables.COMPANY_WORDS))
            name = f"{base}{qualifier} {_FORM_SUFFIX[form]}"
            if name not in self._names:
                break
        else:  # every qualifier taken: a number keeps it unique
            name = f"{base} {len(self._names)} {_FORM_SUFFIX[form]}"
        self._names.add(name)
        return name


def _registration_date(rng: random.Random, number: int) -> dt.date:
    index = min(bisect.bisect_right(_RCS_NUMBERS, number), len(_RCS_NUMBERS) - 1)
    low_n, high_n = _RCS_NUMBERS[index - 1], _RCS_NUMBERS[index]
    low_d, high_d = _RCS_DATES[index - 1], _RCS_DATES[index]
    ordinal = low_d.toordinal() + (number - low_n) * (high_d - low_d).days // (high_n - low_n)
    return min(dt.date.fromordinal(ordinal + rng.randint(-20, 20)), REFERENCE_DATE)


def _legal_form(names: Sequence[str], registered_on: dt.date, rng: random.Random) -> LegalForm:
    possible = [
        form
        for form in (LegalForm[name] for name in names)
        if registered_on >= _FORM_INTRODUCED.get(form, dt.date.min)
    ]
    return rng.choice(possible) if possible else LegalForm.SARL


def _roles(rng: random.Random, form: LegalForm) -> tuple[str, ...]:
    if form in (LegalForm.SARL, LegalForm.SARLS):
        return ("gérant unique",) if rng.random() < 0.7 else ("gérant", "gérant")
    if form in (LegalForm.SA, LegalForm.SE):
        if rng.random() < 0.3:
            return ("administrateur unique",)
        return ("président du conseil d'administration", "administrateur délégué", "administrateur")
    if form is LegalForm.SNC:
        return ("associé gérant", "associé gérant")
    if form is LegalForm.SC:
        return ("président", "administrateur", "administrateur")
    return ("gérant",)  # SCS, SCSp, SCA: the manager of the general partner


def _appointment(rng: random.Random, person: Person, registered_on: dt.date) -> dt.date:
    birth = person.birth_date
    adult_on = dt.date(birth.year + ADULT_AGE, birth.month, min(birth.day, 28))
    start = max(registered_on, adult_on)
    if start >= REFERENCE_DATE:
        return REFERENCE_DATE
    if start == registered_on and rng.random() < 0.6:
        return start
    return start + dt.timedelta(days=rng.randrange((REFERENCE_DATE - start).days + 1))


def _share_capital(rng: random.Random, form: LegalForm, registered_on: dt.date) -> int:
    if form is LegalForm.SARL and registered_on.year < 2002 and rng.random() < 0.6:
        return _LUF_SARL_CAPITAL_CENTS
    return rng.choice(_CAPITAL_EUR[form]) * 100


def generate(seed: int = 20260101, persons: int = 10_000, *, companies: int | None = None) -> DemoData:
    """Generate the data set; ``companies`` defaults to 15% of ``persons`` (1,500 for 10,000)."""
    if persons < 1:
        raise ValueError("persons must be at least 1")
    rng = random.Random(seed)
    people, households = _Population(rng).build(persons)
    incomes = _incomes(rng, people, households)
    company_count = max(1, persons * 3 // 20) if companies is None else companies
    firms = _Companies(rng, people).build(company_count)
    return DemoData(seed=seed, persons=people, households=households, companies=firms, incomes=incomes)
