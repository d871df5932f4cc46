"""Which response fields a mandate allows, top-level or nested.

A contract's fields are named by paths: ``given_names`` at the top level,
``household_members.given_names`` inside a nested message (every element of a
repeated one). ``field_categories`` maps every path to its data category.

A mandate allows a field when

- it names the field or a field that holds it (``household_members`` allows the
  whole sub-message, as before nested paths existed);
- the field is top-level and the mandate names its category (``NAME``);
- the field is nested and the mandate names its category *qualified by a field
  that holds it* (``managers.NAME``: the managers' names).

A plain category never reaches inside a sub-message: ``NAME`` does not allow the
household members' names, so a mandate written before nested fields had
categories allows exactly what it allowed then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from consent.model import Mandate

__all__ = ["allowed_fields", "ancestors", "category_problem"]


def ancestors(path: str) -> tuple[str, ...]:
    """The paths that hold ``path``, outermost first: ``a.b.c`` -> ``("a", "a.b")``."""
    parts = path.split(".")
    return tuple(".".join(parts[:i]) for i in range(1, len(parts)))


def _directly_allowed(path: str, category: str, mandate: Mandate) -> bool:
    if path in mandate.fields:
        return True
    if not category:
        return False
    holders = ancestors(path)
    if not holders:
        return category in mandate.categories
    return any(f"{h}.{category}" in mandate.categories for h in holders)


def allowed_fields(mandate: Mandate, field_categories: Mapping[str, str]) -> frozenset[str]:
    """Field paths the mandate allows, each at its highest level (a path held by an allowed one is left out)."""
    direct = {p for p, c in field_categories.items() if _directly_allowed(p, c, mandate)}
    return frozenset(p for p in direct if not any(a in direct for a in ancestors(p)))


def category_problem(category: str, field_categories: Mapping[str, str], message: str = "the answer") -> str:
    """Why ``category`` (plain, or qualified ``path.CATEGORY``) allows nothing in ``message`` ("" if it does)."""
    holder, _, plain = category.rpartition(".")
    if not holder:
        top = {c for p, c in field_categories.items() if "." not in p}
        return "" if plain in top else f"no field of {message} has category {category!r}"
    if holder not in field_categories:
        return f"{holder!r} is not a field of {message}"
    if plain in _categories_below(holder, field_categories.items()):
        return ""
    return f"no field inside {holder!r} of {message} has category {plain!r}"


def _categories_below(holder: str, items: Iterable[tuple[str, str]]) -> set[str]:
    prefix = holder + "."
    return {c for p, c in items if p.startswith(prefix) and c}
