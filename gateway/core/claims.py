"""Strict reading of JWT claims: each claim has one type, time claims are finite NumericDates.

A JWT's JSON is read again here: duplicated member names are refused, and so are
``NaN``, ``Infinity`` and ``-Infinity`` (which Python's ``json``, and so PyJWT,
accept) in any claim, because a token that a proxy or a log reads one way must
not be acted on another way.

Time claims (``exp iat nbf auth_time``) are finite JSON numbers, integer or not
(RFC 7519 allows fractions of a second), from 0 to 253402300799 (9999-12-31):
never a boolean, a string, ``null``, a non-finite number or an integer too large
to be a date. Every refusal names the claim, never its value.

The three segments of a compact JWS are strict base64url (RFC 7515 §2): no padding,
no character outside ``A-Z a-z 0-9 - _``, no unused bits set. PyJWT decodes
leniently, so ``TOKEN + "=="`` or a changed last character would otherwise be a
second string for the same token (a second cache key, a second replay key).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["MAX_NUMERIC_DATE", "TIME_CLAIMS", "ClaimProblem", "check_claims", "check_strings", "has_non_finite",
           "strict_segment"]

#: 9999-12-31T23:59:59Z: beyond, a "date" is a way to overflow or to never expire.
MAX_NUMERIC_DATE = 253_402_300_799
TIME_CLAIMS = ("exp", "iat", "nbf", "auth_time")
_MAX_STRING = 1024
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class ClaimProblem(ValueError):
    """A claim is missing or has the wrong type; ``claim`` names it (a value is never quoted)."""

    def __init__(self, claim: str, problem: str) -> None:
        self.claim, self.problem = claim, problem
        self.missing = problem == "is missing"
        super().__init__(f"The '{claim}' claim {problem}")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicated member")
        out[key] = value
    return out


def _strict_base64url(segment: str) -> bytes:
    """The bytes of an unpadded, canonical base64url segment; ``ValueError`` for any other spelling."""
    if _BASE64URL.fullmatch(segment) is None or len(segment) % 4 == 1:
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != segment:
        raise ValueError("not canonical base64url")   # unused low bits set: another spelling of the same bytes
    return raw


def strict_segment(token: str, index: int) -> dict[str, Any]:
    """The JOSE header (0) or payload (1) of a compact JWS; ``ValueError`` if not one JSON object.

    Every segment must be strict base64url, the JSON UTF-8, and duplicated member names are refused
    here. ``NaN`` and ``Infinity`` are read (as Python's ``json`` does) so that ``check_claims`` can
    refuse them naming the claim; ``has_non_finite`` finds them anywhere else (a header).
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    try:
        raws = [_strict_base64url(part) for part in parts]   # all three: the signature is spelt once too
        value = json.loads(raws[index].decode("utf-8"), object_pairs_hook=_unique)
    except (binascii.Error, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise ValueError("not strict JSON") from exc
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def has_non_finite(value: object) -> bool:
    """True when a ``NaN`` or an infinity is anywhere in this parsed JSON value."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(has_non_finite(v) for v in value)
    return False


def _numeric_date(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClaimProblem(name, "must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ClaimProblem(name, "must be a finite number")
    if not 0 <= value <= MAX_NUMERIC_DATE:
        raise ClaimProblem(name, "is out of range")


def _string(name: str, value: object, *, max_len: int = _MAX_STRING) -> None:
    if not isinstance(value, str) or not value:
        raise ClaimProblem(name, "must be a non-empty string")
    if len(value) > max_len:
        raise ClaimProblem(name, "is too long")


def _audience(value: object) -> None:
    if isinstance(value, list):
        if not value or len(value) > 32:
            raise ClaimProblem("aud", "must be a string or a short non-empty list of strings")
        for item in value:
            _string("aud", item)
        return
    _string("aud", value)


def _confirmation(value: object) -> None:
    if not isinstance(value, Mapping):
        raise ClaimProblem("cnf", "must be an object")
    for member in ("jkt", "x5t#S256"):
        if member in value:
            _string(f"cnf.{member}", value[member], max_len=128)


#: Claims the gateway reads, by their one type; other claims are ignored (and never used).
_CHECKS: dict[str, Callable[[str, object], None]] = {
    "iss": _string,
    "sub": lambda n, v: _string(n, v, max_len=256),
    "jti": lambda n, v: _string(n, v, max_len=256),
    "scope": lambda n, v: _string(n, v, max_len=4096) if v != "" else None,
    "client_id": _string,
    "azp": _string,
}


def check_claims(claims: Mapping[str, Any], required: Iterable[str] = ()) -> None:
    """Raise ``ClaimProblem`` for the first missing or ill-typed claim (the JSON must come from ``strict_segment``)."""
    for name in required:
        if name not in claims:
            raise ClaimProblem(name, "is missing")
    for name in TIME_CLAIMS:
        if name in claims:
            _numeric_date(name, claims[name])
    for name, check in _CHECKS.items():
        if name in claims:
            check(name, claims[name])
    if "aud" in claims:
        _audience(claims["aud"])
    if "cnf" in claims:
        _confirmation(claims["cnf"])
    for name, value in claims.items():   # claims the gateway does not read may not be odd either
        if has_non_finite(value):
            raise ClaimProblem(name[:64], "must not hold NaN or Infinity")


def check_strings(claims: Mapping[str, Any], names: Iterable[str], *, max_len: int = _MAX_STRING) -> None:
    """Each of ``names`` that is present is a non-empty string of at most ``max_len`` characters."""
    for name in names:
        if name in claims:
            _string(name, claims[name], max_len=max_len)
