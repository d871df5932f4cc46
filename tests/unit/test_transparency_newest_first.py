"""The citizen's history newest first, paged by the last entry shown; data items by their names for people."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.core.errors import GatewayError
from gateway.core.transparency import newest_first_page, page_token, parse_page_token_of
from tests.unit.test_transparency import CAT, rec

NAMES = {"p.v1.Pop/GetPerson": {"family_name": {"fr": "Nom de famille", "de": "Familienname", "en": "Family name"}}}


def test_pages_go_from_the_newest_to_the_oldest_without_overlap() -> None:
    visible = [rec(i) for i in range(1, 8)]
    first = newest_first_page(visible, 0, before=0, size=3, cat=CAT)
    second = newest_first_page(visible, 0, before=first.next_after, size=3, cat=CAT)
    last = newest_first_page(visible, 0, before=second.next_after, size=3, cat=CAT)
    assert [[e.id for e in p.entries] for p in (first, second, last)] == [[7, 6, 5], [4, 3, 2], [1]]
    assert (last.next_after, first.total) == (0, 7)


def test_entries_recorded_between_two_pages_neither_shift_nor_repeat_the_next_page() -> None:
    visible = [rec(i) for i in range(1, 6)]
    first = newest_first_page(visible, 0, before=0, size=2, cat=CAT)
    grown = [*visible, rec(6), rec(7)]
    second = newest_first_page(grown, 0, before=first.next_after, size=2, cat=CAT)
    assert ([e.id for e in first.entries], [e.id for e in second.entries]) == ([5, 4], [3, 2])


def test_a_newest_first_token_is_not_read_as_an_oldest_first_one() -> None:
    assert parse_page_token_of(page_token(42, "before"), "before") == 42
    with pytest.raises(GatewayError) as refused:
        parse_page_token_of(page_token(42), "before")
    assert refused.value.reason == "INVALID_ARGUMENT"


def test_the_fields_that_left_carry_the_contracts_names_for_people() -> None:
    [entry] = newest_first_page([rec(1)], 0, before=0, size=1, cat=replace(CAT, display_names=NAMES)).entries
    assert entry.data_field_names == (NAMES["p.v1.Pop/GetPerson"]["family_name"], {})
