"""Pseudonyms: HMAC-SHA256 (RFC 2104) under the key, truncated to 32 hex digits, whatever the value."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.pseudonym import Pseudonymiser


@given(st.binary(min_size=16, max_size=200), st.text(min_size=1, max_size=64))
def test_a_pseudonym_is_the_truncated_hmac_of_the_value(key: bytes, value: str) -> None:
    p = Pseudonymiser(key)
    expected = hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]
    assert p(value) == expected
    assert p(value) == expected   # the keyed state is copied, never advanced


def test_the_empty_value_has_no_pseudonym_and_short_keys_are_refused() -> None:
    assert Pseudonymiser(b"k" * 16)("") == ""
    with pytest.raises(ValueError):
        Pseudonymiser(b"k" * 15)


def test_rfc_4231_test_case_1() -> None:
    # RFC 4231 §4.2: key 0x0b * 20, data "Hi There"
    assert Pseudonymiser(b"\x0b" * 20)("Hi There") == "b0344c61d8db38535ca8afceaf0bf12b"
