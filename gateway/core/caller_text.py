"""What the gateway may record of the values a caller chooses.

Agencies choose the purpose, case, officer, AI system, consent and request ids they
send; the log keeps them and the citizen's page shows them. Caller text must
therefore never reach the log as free text: a purpose is recorded as a code of the
purposes catalogue or as ``UNKNOWN_PURPOSE``; every caller identifier is refused
unless it is a short identifier (``CALLER_ID``):

* 1 to 64 characters of ``A-Z a-z 0-9 . _ : / -``, the first a letter or digit,
  so that no recorded value starts a spreadsheet formula (``= + - @``) or holds
  spaces, quotes, markup or control characters;
* no national identification number (13 digits with a possible birth date and
  both check digits, ``gateway.core.identifiers``) anywhere in it, alone, inside
  a longer run of digits, or spread out with separators between its digits
  (``1952.0515.52689``, ``1952-05-15-526-89``, spaces in free text): every
  13-digit window of each stretch of the value without letters, separators
  removed, is checked, so a person's id never enters the log in clear through a
  header. Letters end a stretch and checking the check digits, not just "13
  digits", keeps random-looking ids usable: about 1 UUID in 100,000 is refused
  (counting digits across letters too would refuse 1 in 800).

Each ``*_problem`` function returns ``None`` when the value may be recorded, or a
short public explanation that never repeats the value. Pure functions: both front
doors and every service decide identically.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Container

from gateway.core.identifiers import national_id_problem

__all__ = [
    "CALLER_HEADERS",
    "CALLER_ID",
    "MAX_FREE_TEXT",
    "UNKNOWN_PURPOSE",
    "caller_id_problem",
    "free_text_problem",
    "fresh_caller_id",
    "holds_national_id",
    "recorded_purpose",
]

#: A caller identifier that may be recorded and shown (see the module docstring).
CALLER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
#: The purpose recorded when the caller's purpose is not a catalogue code.
UNKNOWN_PURPOSE = "unknown"
#: Longest free text (an administrator's reason for a change) that may be recorded.
MAX_FREE_TEXT = 200
#: ``CallContext`` attribute -> the header (gRPC metadata key) that carries it.
CALLER_HEADERS: tuple[tuple[str, str], ...] = (
    ("consent_id", "x-consent-id"),
    ("case_id", "x-case-id"),
    ("officer_id", "x-officer-id"),
    ("ai_system", "x-ai-system"),
    ("request_id", "x-request-id"),
)

_LETTERS = re.compile(r"[^\W\d_]+")
_NOT_DIGIT = re.compile(r"[^0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_ID_RULE = "must be 1 to 64 characters of A-Z a-z 0-9 . _ : / -, starting with a letter or digit"
_NID_RULE = "must not hold a national identification number"
#: Caller identifiers already accepted (``caller_id_problem``); cleared when full.
_ACCEPTED_KEPT = 4096
_accepted: set[str] = set()


def holds_national_id(text: str) -> bool:
    """True when 13 digits of ``text`` in a row, separators (not letters) between them ignored, are a national id."""
    for stretch in _LETTERS.split(text):
        digits = _NOT_DIGIT.sub("", stretch)
        if any(national_id_problem(digits[i : i + 13]) is None for i in range(len(digits) - 12)):
            return True
    return False


def caller_id_problem(value: str) -> str | None:
    """Why ``value`` may not be recorded as a caller identifier, or None (empty means "not sent").

    Pure, and asked for the same few values again and again (each item of a bulk look-up carries the
    call's case and officer ids): accepted values are remembered (at most ``_ACCEPTED_KEPT``, each at most
    64 characters). Refused ones are not: a request body's case_id may be 64 KiB, and a refused value
    may hold a national id."""
    if not value or value in _accepted:
        return None
    if CALLER_ID.fullmatch(value) is None:
        return _ID_RULE
    if holds_national_id(value):
        return _NID_RULE
    if len(_accepted) >= _ACCEPTED_KEPT:
        _accepted.clear()
    _accepted.add(value)
    return None


def fresh_caller_id(prefix: str = "", draw: Callable[[], str] = lambda: uuid.uuid4().hex) -> str:
    """A new identifier the gateway gives (a request id, a consent id) that passes ``caller_id_problem``.

    ``prefix + draw()``, drawn again while it would be refused: 32 random hex digits hold a run of 13
    digits that is a valid national identification number about once in 75,000 draws, and such an id,
    echoed or sent back by an agency as ``x-request-id`` or ``x-consent-id``, would be refused
    ``CALLER_FIELD_INVALID`` although the agency did nothing wrong.

    Raises ``ValueError`` when 16 draws in a row are refused: the prefix itself cannot make an allowed id
    (too long, a character outside the rule, a national id), where drawing again would never end."""
    for _ in range(16):
        value = prefix + draw()
        if caller_id_problem(value) is None:
            return value
    raise ValueError(f"no allowed caller id starts with this prefix ({len(prefix)} characters)")


def free_text_problem(value: str, *, max_chars: int = MAX_FREE_TEXT) -> str | None:
    """Why ``value`` may not be recorded as free text (a staff member's reason), or None.

    Free text is for staff, never shown to citizens as fact; it is still bounded, kept
    to one line of printable characters and free of national ids, and neutralised
    in every export (``gateway.core.export_safety``).
    """
    if len(value) > max_chars:
        return f"must be at most {max_chars} characters"
    if _CONTROL.search(value):
        return "must be one line of printable characters"
    if holds_national_id(value):
        return _NID_RULE
    return None


def recorded_purpose(value: str, catalogue: Container[str]) -> str:
    """The purpose as the log may hold it: a catalogue code, "" when none was stated, else ``UNKNOWN_PURPOSE``."""
    if not value:
        return ""
    return value if value in catalogue else UNKNOWN_PURPOSE
