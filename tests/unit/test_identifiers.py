"""Format checks for national ids, RCS numbers and fiscal years."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.identifiers import (
    fiscal_year_problem,
    luhn_check_digit,
    make_national_id,
    national_id_problem,
    rcs_number_problem,
    verhoeff_check_digit,
)

VALID_ID = make_national_id(dt.date(1983, 4, 12), 123)
TODAY = dt.date(2026, 11, 28)


def _with_digit(value: str, index: int, digit: int) -> str:
    return value[:index] + str(digit) + value[index + 1 :]


def test_check_digits_match_published_examples() -> None:
    assert luhn_check_digit("7992739871") == "3"
    assert verhoeff_check_digit("236") == "3"
    assert verhoeff_check_digit("12345") == "1"


def test_accepts_a_well_formed_national_id() -> None:
    assert VALID_ID == "1983041212318"
    assert national_id_problem(VALID_ID) is None


@pytest.mark.parametrize("value", ["", "198304121231", "19830412123189", "1983O41212318", " 1983041212318"])
def test_refuses_a_national_id_that_is_not_13_digits(value: str) -> None:
    assert national_id_problem(value) == "must be 13 digits"


@pytest.mark.parametrize("birth", ["19830230", "19831301", "19830001", "18000101"])
def test_refuses_an_impossible_birth_date(birth: str) -> None:
    payload = birth + "123"
    value = payload + luhn_check_digit(payload) + verhoeff_check_digit(payload)
    assert national_id_problem(value) == "impossible birth date"


def test_refuses_a_wrong_luhn_check_digit() -> None:
    wrong = (int(VALID_ID[11]) + 1) % 10
    assert national_id_problem(_with_digit(VALID_ID, 11, wrong)) == "wrong Luhn check digit"


def test_refuses_a_wrong_verhoeff_check_digit() -> None:
    wrong = (int(VALID_ID[12]) + 1) % 10
    assert national_id_problem(_with_digit(VALID_ID, 12, wrong)) == "wrong Verhoeff check digit"


def test_make_national_id_refuses_a_sequence_out_of_range() -> None:
    with pytest.raises(ValueError):
        make_national_id(dt.date(1990, 1, 1), 1000)


births = st.dates(min_value=dt.date(1850, 1, 1), max_value=dt.date(2100, 12, 31))
sequences = st.integers(min_value=0, max_value=999)


@given(births, sequences)
def test_make_national_id_is_always_valid(birth: dt.date, seq: int) -> None:
    value = make_national_id(birth, seq)
    assert national_id_problem(value) is None
    assert value[:8] == birth.strftime("%Y%m%d")


@given(births, sequences, st.integers(min_value=0, max_value=12), st.integers(min_value=1, max_value=9))
def test_any_single_digit_change_is_detected(birth: dt.date, seq: int, index: int, shift: int) -> None:
    value = make_national_id(birth, seq)
    changed = _with_digit(value, index, (int(value[index]) + shift) % 10)
    assert national_id_problem(changed) is not None


@pytest.mark.parametrize("value", ["B123456", "B1", "A42", "F12345", "J999999"])
def test_accepts_rcs_numbers(value: str) -> None:
    assert rcs_number_problem(value) is None


@pytest.mark.parametrize(
    "value", ["", "B", "B0123", "B1234567", "b123456", "123456", "BB12", "B 123", "B12a"]
)
def test_refuses_malformed_rcs_numbers(value: str) -> None:
    assert rcs_number_problem(value) is not None


@pytest.mark.parametrize("year", [1990, 2024, 2026])
def test_accepts_fiscal_years_from_1990_to_this_year(year: int) -> None:
    assert fiscal_year_problem(year, today=TODAY) is None


@pytest.mark.parametrize("year", [1989, 2027, -1, 0])
def test_refuses_fiscal_years_out_of_range(year: int) -> None:
    assert fiscal_year_problem(year, today=TODAY) == "must be between 1990 and 2026"


def test_refuses_a_boolean_as_fiscal_year() -> None:
    assert fiscal_year_problem(True, today=TODAY) is not None
