"""Strict JSON: one meaning for every body (gateway.core.strict_json)."""

from __future__ import annotations

import pytest

from gateway.core.strict_json import StrictJsonError, loads_strict


def test_a_key_with_a_lone_surrogate_is_refused_and_paired_ones_are_text() -> None:
    with pytest.raises(StrictJsonError):
        loads_strict(b'{"\\ud800": 1}')   # the protobuf runtime failed on it as a field name: a 500
    with pytest.raises(StrictJsonError):
        loads_strict(b'{"items": [{"national\\udfffId": "1"}]}')
    assert loads_strict(b'{"\\ud83d\\ude00": 1, "\\u00e9": 2}') == {"\U0001f600": 1, "\xe9": 2}
