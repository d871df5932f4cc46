"""Format checks for the identifiers that name a data subject or a period.

Each ``*_problem`` function returns ``None`` when the value is well formed, or a
short public English explanation of what is wrong. The explanation never repeats
the value, so it can be shown to any caller and written to any log.

The Luxembourg national identification number (matricule) has 13 digits:
``YYYYMMDD`` (birth date) + ``XXX`` (sequence) + a Luhn check digit + a Verhoeff
check digit, both check digits being computed over the first 11 digits.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = [
    "EARLIEST_BIRTH_YEAR",
    "EARLIEST_FISCAL_YEAR",
    "fiscal_year_problem",
    "luhn_check_digit",
    "make_national_id",
    "national_id_problem",
    "rcs_number_problem",
    "verhoeff_check_digit",
]

EARLIEST_BIRTH_YEAR = 1850  # nobody alive, or in the register's living records, was born earlier
EARLIEST_FISCAL_YEAR = 1990

_NATIONAL_ID = re.compile(r"[0-9]{13}")
_RCS_NUMBER = re.compile(r"[A-Z][1-9][0-9]{0,5}")

# Verhoeff tables: multiplication in the dihedral group D5, position permutation, inverse.
_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)
_VERHOEFF_INV = (0, 4, 3, 2, 1, 5, 6, 7, 8, 9)


def luhn_check_digit(digits: str) -> str:
    """Return the Luhn check digit to append to ``digits`` (a string of decimal digits)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:  # the digit next to the check digit is doubled
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return str((10 - total % 10) % 10)


def verhoeff_check_digit(digits: str) -> str:
    """Return the Verhoeff check digit to append to ``digits`` (a string of decimal digits)."""
    check = 0
    for position, char in enumerate(reversed(digits)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[(position + 1) % 8][int(char)]]
    return str(_VERHOEFF_INV[check])


def _birth_date(digits: str) -> dt.date | None:
    try:
        birth = dt.date(int(digits[0:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None
    return birth if birth.year >= EARLIEST_BIRTH_YEAR else None


def national_id_problem(value: str) -> str | None:
    """Explain why ``value`` is not a valid 13-digit national identification number, or return None."""
    if not isinstance(value, str) or _NATIONAL_ID.fullmatch(value) is None:
        return "must be 13 digits"
    if _birth_date(value) is None:
        return "impossible birth date"
    if value[11] != luhn_check_digit(value[:11]):
        return "wrong Luhn check digit"
    if value[12] != verhoeff_check_digit(value[:11]):
        return "wrong Verhoeff check digit"
    return None


def make_national_id(birth: dt.date, seq: int) -> str:
    """Build the valid national identification number for a birth date and a sequence 0..999."""
    if not 0 <= seq <= 999:
        raise ValueError("sequence must be between 0 and 999")
    if birth.year < EARLIEST_BIRTH_YEAR:
        raise ValueError(f"birth year must be {EARLIEST_BIRTH_YEAR} or later")
    payload = f"{birth.year:04d}{birth.month:02d}{birth.day:02d}{seq:03d}"
    return payload + luhn_check_digit(payload) + verhoeff_check_digit(payload)


def rcs_number_problem(value: str) -> str | None:
    """Explain why ``value`` is not a trade register number such as ``B123456``, or return None."""
    if not isinstance(value, str) or _RCS_NUMBER.fullmatch(value) is None:
        return "must be a section letter and 1 to 6 digits without leading zero, e.g. B123456"
    return None


def fiscal_year_problem(value: int, *, today: dt.date) -> str | None:
    """Explain why ``value`` is not a fiscal year between 1990 and the current year, or return None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be a four-digit year"
    if not EARLIEST_FISCAL_YEAR <= value <= today.year:
        return f"must be between {EARLIEST_FISCAL_YEAR} and {today.year}"
    return None
