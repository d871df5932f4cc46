"""The types of the synthetic data set and its lookups (see ``gateway.demo.data``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

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
    "relationship_between",
    "tax_class_for",
]

REFERENCE_DATE = dt.date(2026, 6, 30)  # the day the register is "as of"
FISCAL_YEARS: tuple[int, ...] = tuple(range(2021, 2026))
ADULT_AGE = 18


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"


class CivilStatus(StrEnum):
    SINGLE = "single"
    MARRIED = "married"
    PARTNERED = "partnered"  # declared partnership under the law of 9 July 2004
    DIVORCED = "divorced"
    WIDOWED = "widowed"


class UnionKind(StrEnum):
    """How the adults of a household are bound; NONE for a household of one adult."""

    NONE = "none"
    MARRIED = "married"
    PARTNERED = "partnered"


class Relationship(StrEnum):
    """What a household member is to the person whose entry is read."""

    SPOUSE = "spouse"
    PARTNER = "partner"
    CHILD = "child"
    PARENT = "parent"
    OTHER = "other"


class TaxClass(StrEnum):
    ONE = "1"
    ONE_A = "1a"
    TWO = "2"


class LegalForm(StrEnum):
    SA = "SA"
    SARL = "SARL"
    SARLS = "SARL-S"
    SCS = "SCS"
    SCSP = "SCSp"
    SCA = "SCA"
    SE = "SE"
    SNC = "SNC"
    SC = "SC"  # société coopérative


class CompanyStatus(StrEnum):
    ACTIVE = "active"
    IN_LIQUIDATION = "in liquidation"
    STRUCK_OFF = "struck off"


@dataclass(frozen=True, slots=True)
class Address:
    house_number: str
    street: str
    postcode: str  # L-NNNN
    locality: str
    commune: str
    country: str = "LU"  # ISO 3166-1 alpha-2


@dataclass(frozen=True, slots=True)
class Person:
    national_id: str
    given_names: str
    family_name: str
    birth_date: dt.date
    birth_place: str
    sex: Sex
    nationalities: tuple[str, ...]  # ISO 3166-1 alpha-3, Luxembourg first when held
    address: Address
    civil_status: CivilStatus
    household_id: str

    def age(self, on: dt.date) -> int:
        """Age in whole years on the given day."""
        had_birthday = (on.month, on.day) >= (self.birth_date.month, self.birth_date.day)
        return on.year - self.birth_date.year - (0 if had_birthday else 1)


@dataclass(frozen=True, slots=True)
class Household:
    household_id: str
    address: Address
    adults: tuple[str, ...]  # national ids: one adult, or a couple bound by ``union``
    children: tuple[str, ...]  # national ids, minors or adult children still at home
    union: UnionKind

    @property
    def members(self) -> tuple[str, ...]:
        return self.adults + self.children


@dataclass(frozen=True, slots=True)
class Manager:
    national_id: str  # the manager is a person of the data set; names are copied as registered
    given_names: str
    family_name: str
    role: str  # "gérant", "administrateur", "administrateur délégué" ...
    appointed_on: dt.date


@dataclass(frozen=True, slots=True)
class Company:
    rcs_number: str
    name: str
    legal_form: LegalForm
    registered_office: Address
    status: CompanyStatus
    managers: tuple[Manager, ...]
    nace_codes: tuple[str, ...]
    share_capital_cents: int  # EUR
    registered_on: dt.date

    @property
    def share_capital(self) -> Decimal:
        return Decimal(self.share_capital_cents).scaleb(-2)


@dataclass(frozen=True, slots=True)
class IncomeRecord:
    national_id: str
    fiscal_year: int
    taxable_income_cents: int  # EUR
    tax_class: TaxClass
    issued_on: dt.date

    @property
    def taxable_income(self) -> Decimal:
        return Decimal(self.taxable_income_cents).scaleb(-2)

    @property
    def amount_text(self) -> str:
        """The amount as a plain decimal string with two decimals, e.g. ``45231.50``."""
        return f"{self.taxable_income_cents // 100}.{self.taxable_income_cents % 100:02d}"


class DemoData:
    """The generated data set with its lookups; lookups return None for unknown keys."""

    __slots__ = (
        "_companies",
        "_households",
        "_incomes",
        "_persons",
        "companies",
        "households",
        "incomes",
        "persons",
        "seed",
    )

    def __init__(
        self,
        *,
        seed: int,
        persons: tuple[Person, ...],
        households: tuple[Household, ...],
        companies: tuple[Company, ...],
        incomes: tuple[IncomeRecord, ...],
    ) -> None:
        self.seed = seed
        self.persons = persons
        self.households = households
        self.companies = companies
        self.incomes = incomes
        self._persons = {p.national_id: p for p in persons}
        self._households = {h.household_id: h for h in households}
        self._companies = {c.rcs_number: c for c in companies}
        self._incomes = {(r.national_id, r.fiscal_year): r for r in incomes}

    def person(self, national_id: str) -> Person | None:
        return self._persons.get(national_id)

    def company(self, rcs_number: str) -> Company | None:
        return self._companies.get(rcs_number)

    def income(self, national_id: str, fiscal_year: int) -> IncomeRecord | None:
        return self._incomes.get((national_id, fiscal_year))

    def household(self, household_id: str) -> Household | None:
        return self._households.get(household_id)

    def household_members(self, national_id: str) -> tuple[tuple[Person, Relationship], ...]:
        """The other members of a person's household, each with what they are to that person."""
        person = self._persons.get(national_id)
        if person is None:
            return ()
        household = self._households[person.household_id]
        return tuple(
            (self._persons[other], relationship_between(household, national_id, other))
            for other in household.members
            if other != national_id
        )


def relationship_between(household: Household, viewer: str, member: str) -> Relationship:
    """What ``member`` is to ``viewer``, both being members of ``household``."""
    viewer_adult, member_adult = viewer in household.adults, member in household.adults
    if viewer_adult and member_adult:
        return {UnionKind.MARRIED: Relationship.SPOUSE, UnionKind.PARTNERED: Relationship.PARTNER}.get(
            household.union, Relationship.OTHER
        )
    if viewer_adult:
        return Relationship.CHILD
    return Relationship.PARENT if member_adult else Relationship.OTHER


def tax_class_for(household: Household, national_id: str) -> TaxClass:
    """Tax class of a household member: 2 in a couple, 1a alone with children, else 1."""
    if national_id not in household.adults:
        return TaxClass.ONE
    if household.union is not UnionKind.NONE:
        return TaxClass.TWO
    return TaxClass.ONE_A if household.children else TaxClass.ONE
