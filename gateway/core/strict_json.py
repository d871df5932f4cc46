"""JSON with exactly one meaning: UTF-8 only, no duplicated keys, no NaN or Infinity, bounded nesting.

Python's ``json`` module keeps the last of two equal keys (other parsers keep the
first), reads ``NaN``/``Infinity`` and ``1e999``, and recurses as deep as the text
goes. A proxy, a log and the gateway would then read different documents, so
these are refused instead, in bodies from callers and in answers from registries.
Bytes must be UTF-8 without a byte order mark (RFC 8259 §8.1): ``json.loads`` would
otherwise guess UTF-16 or UTF-32 and drop a BOM, reading bytes that a proxy reads as
something else.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "StrictJsonError", "loads_strict"]

#: Deeper than any contract needs; far below Python's recursion limit.
MAX_JSON_DEPTH = 32


class StrictJsonError(ValueError):
    """The text is not JSON with one meaning; the message says why, without quoting the text."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictJsonError("duplicated key in a JSON object")
        if not key.isascii() and not _unicode(key):
            raise StrictJsonError("a JSON object key holds a lone surrogate (\\ud800-\\udfff): it is no text")
        out[key] = value
    return out


def _unicode(text: str) -> bool:
    """Whether ``text`` is Unicode text: ``\\ud800`` escapes without their pair decode to lone surrogates,
    which no UTF-8 text holds (the protobuf runtime fails on them as field names: a 500, not a 400)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _constant(name: str) -> Any:
    raise StrictJsonError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJsonError("a JSON number is out of range")
    return value


def _deeper_than(document: Any, limit: int) -> bool:
    """Walked without recursion, after parsing (the C parser stops itself at the recursion limit)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


def loads_strict(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` refusing duplicated keys, non-finite numbers and nesting deeper than ``max_depth``;
    bytes that are not UTF-8 without a BOM are refused too."""
    if isinstance(text, bytes | bytearray):
        if text.startswith(b"\xef\xbb\xbf"):
            raise StrictJsonError("JSON starts with a byte order mark")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise StrictJsonError("JSON is not UTF-8") from None
    try:
        document = json.loads(text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_finite)
    except StrictJsonError:
        raise
    except RecursionError:
        raise StrictJsonError(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError:
        raise StrictJsonError("not JSON") from None
    if _deeper_than(document, max_depth):
        raise StrictJsonError(f"JSON nested deeper than {max_depth} levels")
    return document
