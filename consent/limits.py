"""Mandate limits: conditions on request fields, evaluated generically (no field is named here)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from consent.model import LIMIT_OPS, Limit

__all__ = ["describe_limit", "limit_error", "limit_problem"]


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def limit_error(limit: Limit) -> str:
    """Why a limit is malformed (for configuration and the admin API), or ""."""
    if limit.op not in LIMIT_OPS:
        return f"unknown limit operator {limit.op!r}; one of {sorted(LIMIT_OPS)}"
    if not limit.field:
        return "a limit names a request field"
    want = {"eq": 1, "min": 1, "max": 1, "year_offset": 2}.get(limit.op)
    if want is not None and len(limit.values) != want:
        return f"{limit.op} takes {want} value(s)"
    if limit.op in ("in", "not_in") and not limit.values:
        return f"{limit.op} takes at least one value"
    if limit.op in ("min", "max", "year_offset") and any(_int(v) is None for v in limit.values):
        return f"{limit.op} takes integers"
    return ""


def _year_window(limit: Limit, now_us: int) -> tuple[int, int]:
    year = datetime.fromtimestamp(now_us / 1e6, UTC).year
    lo, hi = (int(v) for v in limit.values)
    return year + lo, year + hi


def describe_limit(limit: Limit, now_us: int) -> str:
    """The limit in words, with relative years resolved, e.g. ``fiscal_year must be between 2025 and 2026``."""
    if limit.op == "year_offset":
        lo, hi = _year_window(limit, now_us)
        return f"{limit.field} must be {lo}" if lo == hi else f"{limit.field} must be between {lo} and {hi}"
    values = ", ".join(limit.values)
    return f"{limit.field} {LIMIT_OPS.get(limit.op, limit.op)} {values}"


def limit_problem(limit: Limit, request_fields: Mapping[str, object], now_us: int) -> str:
    """ "" if the request satisfies the limit, else the limit in words. Missing fields fail (deny by default)."""
    if limit_error(limit) or limit.field not in request_fields:
        return describe_limit(limit, now_us)
    value = request_fields[limit.field]
    text, number = str(value), _int(value)
    ok = {
        "eq": lambda: text == limit.values[0],
        "in": lambda: text in limit.values,
        "not_in": lambda: text not in limit.values,
        "min": lambda: number is not None and number >= int(limit.values[0]),
        "max": lambda: number is not None and number <= int(limit.values[0]),
        "year_offset": lambda: number is not None and _in(number, _year_window(limit, now_us)),
    }[limit.op]()
    return "" if ok else describe_limit(limit, now_us)


def _in(n: int, window: tuple[int, int]) -> bool:
    return window[0] <= n <= window[1]
