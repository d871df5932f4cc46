"""Request validation driven by the contracts' ``format`` options."""

from __future__ import annotations

from datetime import date

from gateway.core import identifiers

__all__ = ["format_problem"]


def format_problem(fmt: str, value: object, *, today: date) -> str | None:
    """Why ``value`` is not a valid ``fmt`` identifier, or None if it is."""
    if fmt == "NATIONAL_ID":
        return identifiers.national_id_problem(str(value))
    if fmt == "RCS_NUMBER":
        return identifiers.rcs_number_problem(str(value))
    if fmt == "FISCAL_YEAR":
        return identifiers.fiscal_year_problem(int(str(value) or 0), today=today)
    return None
