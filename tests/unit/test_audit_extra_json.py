"""The canonical text of a record's ``extra`` is json.dumps(sort_keys, compact, ASCII): records already
chained must hash the same whatever encoder builds it."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.audit_chain import _extra_json


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=6))
def test_extra_is_encoded_as_json_dumps_sorted_compact_ascii(extra: dict[str, str]) -> None:
    assert _extra_json(extra) == json.dumps(extra, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
