"""Keyed pseudonyms of identifiers (HMAC-SHA256), used wherever an identifier leaves the registry path."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["Pseudonymiser"]


class Pseudonymiser:
    """``p(value)`` is stable for one key, unlinkable without it, and never reversible."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("pseudonym key must be at least 16 bytes")
        self._key = key

    def __call__(self, value: str) -> str:
        if not value:
            return ""
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:32]
