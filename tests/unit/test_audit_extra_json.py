"""The canonical text of a record's ``extra`` is json.dumps(sort_keys, compact, ASCII): records already
chained must hash the same whatever encoder builds it."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.audit_chain import _extra_json


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=6))
def test_extra_is_encoded_as_json_dumps_sorted_compact_ascii(extra: dict[str, str]) -> None:
    assert _extra_json(extra) == json.dumps(extra, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def test_an_extra_read_back_as_another_empty_value_keeps_its_own_text() -> None:
    """A stored ``extra`` of "null", "[]", "0", "false" or '""' (an operator's edit) is read back as a falsy
    non-dict: an inclusion proof rebuilds the canonical text from it and must show that text, not "{}"
    (which would make the edited record's proof verify against the original hash)."""
    values: tuple[Any, ...] = (None, [], 0, False, "")
    for extra in values:
        assert _extra_json(extra) == json.dumps(extra, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
