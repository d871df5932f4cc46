"""JSON bytes on the REST door: answers in proto3 JSON, and the bulk look-up's NDJSON lines.

The mapping from a message to JSON values is protobuf's (the proto3 JSON mapping as
``json_format.MessageToDict`` with its default options writes it: JSON names, 64-bit integers as
strings, enum names, only the fields ``ListFields`` gives, base64 bytes, ``NaN``/``Infinity`` as
strings, well-known types in their own forms). ``message_to_dict`` gives exactly what
``MessageToDict`` gives — a differential property test holds it to that over every contract message
and protobuf's own descriptor messages — in ≈ a third of the time: the per-field decisions that
``json_format``'s printer takes again at every field of every message are taken once per field
descriptor here. Well-known types with a JSON form of their own go to ``json_format`` itself.

The text is written by orjson: compact (no spaces), UTF-8 with non-ASCII characters as they are,
the same JSON values as ``json.dumps`` gives and ≈ 10× faster (docs/decisions/0010-orjson-on-the-rest-door.md).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

__all__ = ["WELL_KNOWN_FORMS", "json_bytes", "json_line", "message_to_dict", "proto_json"]

_T = FieldDescriptor
_Convert = Callable[[Any], Any]
#: Per field descriptor: its JSON name and the conversion of its value (repeated and map fields whole).
_FIELDS: dict[FieldDescriptor, tuple[str, _Convert]] = {}
#: Per message descriptor: whether json_format writes it itself (a well-known type's own JSON form). Keyed
#: by ``message.DESCRIPTOR`` as it comes (upb's descriptor type), without ``descriptor_of``'s isinstance check.
_OWN_FORM: dict[Any, bool] = {}
#: The well-known types with a JSON form of their own (the proto3 JSON mapping's table); every other
#: message, google.protobuf.Empty and the descriptor messages included, is an object of its fields.
WELL_KNOWN_FORMS = frozenset({
    "google.protobuf.Any", "google.protobuf.Duration", "google.protobuf.FieldMask", "google.protobuf.ListValue",
    "google.protobuf.Struct", "google.protobuf.Timestamp", "google.protobuf.Value",
    *(f"google.protobuf.{w}Value" for w in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool",
                                            "String", "Bytes")),
})


def message_to_dict(message: Message) -> Any:
    """``json_format.MessageToDict(message)`` (default options): a dict, or a well-known type's JSON value.

    Raises ``json_format.SerializeToJsonError`` as it does (a closed enum holding an unknown number)."""
    desc = message.DESCRIPTOR
    own = _OWN_FORM.get(desc)
    if own is None:
        own = _OWN_FORM[desc] = desc.full_name in WELL_KNOWN_FORMS
    if own:
        return json_format.MessageToDict(message)
    js: dict[str, Any] = {}
    for fd, value in message.ListFields():
        plan = _FIELDS.get(fd)
        if plan is None:
            plan = _FIELDS[fd] = _field_plan(fd)
        try:
            js[plan[0]] = plan[1](value)
        except ValueError as exc:   # a well-known type's own refusal (a Value holding NaN ...), as json_format says it
            raise json_format.SerializeToJsonError(f"Failed to serialize {fd.name} field: {exc}.") from exc
    return js


def proto_json(message: Message) -> bytes:
    """The message's proto3 JSON as UTF-8 bytes (``message_to_dict``'s values, compact)."""
    return orjson.dumps(message_to_dict(message))


def json_bytes(value: Any) -> bytes:
    """JSON values (dict, list, str, int, float, bool, None) as compact UTF-8 bytes.

    Raises ``TypeError`` (``orjson.JSONEncodeError``) for anything else, or an integer beyond 64 bits."""
    return orjson.dumps(value)


def json_line(value: Any) -> bytes:
    """``json_bytes`` and a newline: one NDJSON line (a JSON text holds no raw newline)."""
    return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)


def _field_plan(fd: FieldDescriptor) -> tuple[str, _Convert]:
    name = f"[{fd.full_name}]" if fd.is_extension else str(fd.json_name)   # type: ignore[attr-defined]
    entry = fd.message_type
    if entry is not None and entry.GetOptions().map_entry:
        convert_value = _value(entry.fields_by_name["value"])
        return name, lambda value: {_map_key(k): convert_value(value[k]) for k in value}
    convert = _value(fd)
    if fd.is_repeated:
        if convert is _same:
            return name, list
        return name, lambda values: [convert(v) for v in values]
    return name, convert


def _map_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _same(value: Any) -> Any:
    return value


def _value(fd: FieldDescriptor) -> _Convert:
    """The conversion of one value of ``fd``, as ``json_format``'s ``_FieldToJsonObject``."""
    ct = fd.cpp_type
    if ct == _T.CPPTYPE_MESSAGE:
        return message_to_dict
    if ct == _T.CPPTYPE_ENUM:
        return _enum(fd)
    if ct == _T.CPPTYPE_STRING:
        return _bytes if fd.type == _T.TYPE_BYTES else _same   # str(value) of a str is the value
    if ct == _T.CPPTYPE_BOOL:
        return bool
    if ct in (_T.CPPTYPE_INT64, _T.CPPTYPE_UINT64):
        return str
    if ct == _T.CPPTYPE_DOUBLE:
        return _double
    if ct == _T.CPPTYPE_FLOAT:
        return _float
    return _same   # 32-bit integers


def _enum(fd: FieldDescriptor) -> _Convert:
    enum = fd.enum_type
    if enum.full_name == "google.protobuf.NullValue":
        return lambda value: None
    names = {number: v.name for number, v in enum.values_by_number.items()}
    closed = bool(enum.is_closed)

    def convert(value: int) -> Any:
        name = names.get(value)
        if name is not None:
            return name
        if closed:
            raise json_format.SerializeToJsonError(   # json_format's own words
                "Enum field contains an integer value which can not mapped to an enum value.")
        return value

    return convert


def _bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("utf-8")


def _special(value: float) -> str | None:
    if math.isinf(value):
        return "-Infinity" if value < 0.0 else "Infinity"
    if math.isnan(value):
        return "NaN"
    return None


#: json_format's own rounding of a 32-bit float to its shortest decimal form (not in types-protobuf).
_shortest: Callable[[float], float] = type_checkers.ToShortestFloat  # type: ignore[attr-defined]


def _double(value: float) -> Any:
    special = _special(value)
    return value if special is None else special


def _float(value: float) -> Any:
    special = _special(value)
    return _shortest(value) if special is None else special
