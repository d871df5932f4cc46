"""The canonical REST mapping: one request message per HTTP request, or a refusal.

Path variables come from the path only: a query parameter naming one is refused,
and a body may repeat one only with the same value. A query parameter must name a
field of the request that the path does not bind (or be one the route declares,
such as ``fields``), appear once (unless its field is repeated), and be named once
(``national_id`` and ``nationalId`` together are refused). Numbers in paths,
queries and bodies are ASCII decimal: no ``١٢٣``, ``1_000``, ``+12``, ``1e3`` or
``2024.0`` for an integer, no ``NaN`` or ``Infinity`` anywhere.

A body is ``application/json`` (no ``charset``, or ``utf-8``), with no content coding
other than ``identity``, in UTF-8 without a byte order mark (``json_body``): anything
else is refused (415 ``UNSUPPORTED_MEDIA_TYPE``; bad bytes ``INVALID_ARGUMENT``),
never guessed, on every route that reads a JSON body.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.core.errors import GatewayError, Reason
from gateway.core.proto_typing import descriptor_of
from gateway.core.strict_json import StrictJsonError, loads_strict

__all__ = ["check_json_media", "json_body", "parse_body", "rest_message"]

_T = FieldDescriptor
_INTEGERS = frozenset({
    _T.TYPE_INT32, _T.TYPE_SINT32, _T.TYPE_SFIXED32, _T.TYPE_UINT32, _T.TYPE_FIXED32,
    _T.TYPE_INT64, _T.TYPE_SINT64, _T.TYPE_SFIXED64, _T.TYPE_UINT64, _T.TYPE_FIXED64,
})
_FLOATS = frozenset({_T.TYPE_FLOAT, _T.TYPE_DOUBLE})
_DECIMAL = re.compile(r"-?[0-9]{1,20}")
_REAL = re.compile(r"-?[0-9]{1,40}(\.[0-9]{1,40})?([eE][+-]?[0-9]{1,4})?")
#: Messages whose proto3 JSON form is not an object of their fields (json_format checks them itself).
_WELL_KNOWN = "google.protobuf."


def _invalid(detail: str, field: str = "") -> GatewayError:
    return GatewayError(Reason.INVALID_ARGUMENT, detail, field=field)


def parse_body(raw: bytes) -> dict[str, Any]:
    """A JSON object with one meaning (see ``gateway.core.strict_json``), or INVALID_ARGUMENT."""
    try:
        parsed = loads_strict(raw)
    except StrictJsonError as exc:
        raise _invalid(f"The body is not accepted: {exc}") from None
    if not isinstance(parsed, dict):
        raise _invalid("The body must be a JSON object")
    return parsed


def check_json_media(content_type: str | None, content_encoding: str | None) -> None:
    """Refuse (415) a body that is not declared ``application/json`` in UTF-8 and without a coding."""
    if (content_encoding or "identity").strip().lower() != "identity":
        raise GatewayError(Reason.UNSUPPORTED_MEDIA_TYPE, "Content-Encoding is not accepted; send the body as is")
    media, _, params = (content_type or "").partition(";")
    if media.strip().lower() != "application/json":
        raise GatewayError(Reason.UNSUPPORTED_MEDIA_TYPE, "The body must be sent as application/json")
    for param in filter(None, (p.strip() for p in params.split(";"))):
        name, _, value = param.partition("=")
        if name.strip().lower() != "charset" or value.strip().strip('"').lower() != "utf-8":
            raise GatewayError(Reason.UNSUPPORTED_MEDIA_TYPE, "application/json takes no parameter but charset=utf-8")


def json_body(raw: bytes, content_type: str | None, content_encoding: str | None) -> dict[str, Any] | None:
    """The JSON object of a request body, or None when there is no body (nothing to declare)."""
    if not raw and (content_encoding or "identity").strip().lower() == "identity":
        return None
    check_json_media(content_type, content_encoding)
    return parse_body(raw)


_DESCRIPTORS: dict[type[Message], Descriptor] = {}


def _descriptor(req_cls: type[Message]) -> Descriptor:
    """``descriptor_of`` per request class, once (its ``isinstance`` check costs ≈ 1 µs per call)."""
    desc = _DESCRIPTORS.get(req_cls)
    if desc is None:
        desc = _DESCRIPTORS[req_cls] = descriptor_of(req_cls)
    return desc


@functools.cache
def _field_by_any_name(desc: Descriptor) -> dict[str, FieldDescriptor]:
    """A message's fields by proto name and by JSON name (per descriptor, built once; read only)."""
    return {f.name: f for f in desc.fields} | {f.json_name: f for f in desc.fields}


def _enum_name(fd: FieldDescriptor, text: str) -> None:
    """An enum value given by name names one exactly: the protobuf runtime (upb) looks names up as C
    strings, so ``"NAME\\u0000anything"`` would otherwise be read as ``NAME``."""
    if text not in {v.name for v in fd.enum_type.values}:
        raise _invalid(f"{fd.name}: not a value of {fd.enum_type.full_name}", fd.name)


def _scalar_text(fd: FieldDescriptor, text: str) -> None:
    """A path or query value for a number field must be written the one canonical way."""
    if fd.type in _INTEGERS or (fd.type == _T.TYPE_ENUM and text[:1] in tuple("-0123456789")):
        if _DECIMAL.fullmatch(text) is None:
            raise _invalid(f"{fd.name}: not an ASCII decimal integer", fd.name)
    elif fd.type == _T.TYPE_ENUM:
        _enum_name(fd, text)
    elif fd.type in _FLOATS and (_REAL.fullmatch(text) is None or not math.isfinite(float(text))):
        raise _invalid(f"{fd.name}: not a finite ASCII decimal number", fd.name)


def _body_value(fd: FieldDescriptor, value: Any) -> None:
    """The same rule for JSON values, through nested messages, lists and maps."""
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        if isinstance(value, dict):
            entry_value = fd.message_type.fields_by_name["value"]
            for item in value.values():
                _single_body_value(entry_value, item)
        return
    if fd.is_repeated and isinstance(value, list):
        for item in value:
            _single_body_value(fd, item)
        return
    _single_body_value(fd, value)


def _single_body_value(fd: FieldDescriptor, value: Any) -> None:
    if fd.type == _T.TYPE_MESSAGE and fd.message_type is not None:
        if isinstance(value, dict) and not fd.message_type.full_name.startswith(_WELL_KNOWN):
            _body_object(fd.message_type, value)
        return
    if fd.type in _INTEGERS:
        if isinstance(value, float) or (isinstance(value, str) and _DECIMAL.fullmatch(value) is None):
            raise _invalid(f"{fd.name}: not an ASCII decimal integer", fd.name)
    elif fd.type == _T.TYPE_ENUM and isinstance(value, str):
        _enum_name(fd, value)
    elif fd.type in _FLOATS and isinstance(value, str):
        _scalar_text(fd, value)


def _body_object(desc: Descriptor, values: Mapping[str, Any]) -> None:
    fields = _field_by_any_name(desc)
    seen: set[str] = set()
    for key, value in values.items():
        fd = fields.get(key)
        if fd is None:
            continue          # json_format refuses unknown names
        if fd.name in seen:
            raise _invalid(f"{fd.name} is given twice (by its proto and its JSON name)", fd.name)
        seen.add(fd.name)
        _body_value(fd, value)


def _query_values(
    desc: Descriptor, path: Mapping[str, str], query: Iterable[tuple[str, str]], *, body_route: bool
) -> dict[str, Any]:
    fields = _field_by_any_name(desc)
    out: dict[str, Any] = {}
    for key, text in query:
        fd = fields.get(key)
        if fd is not None and fd.name in path:
            raise _invalid(f"{fd.name} is a path variable; a query parameter cannot set it", fd.name)
        if fd is None or body_route or fd.type == _T.TYPE_MESSAGE:
            raise _invalid("A query parameter is not declared for this route", "query")
        _scalar_text(fd, text)
        if fd.is_repeated:
            out.setdefault(fd.name, []).append(text)
        elif fd.name in out:
            raise _invalid(f"{fd.name} is given more than once", fd.name)
        else:
            out[fd.name] = text
    return out


def rest_message(
    req_cls: type[Message],
    *,
    path: Mapping[str, str],
    query: Iterable[tuple[str, str]],
    body: Mapping[str, Any] | None = None,
) -> Message:
    """The request message for ``path`` variables, ``query`` pairs and an optional JSON ``body`` object."""
    desc = _descriptor(req_cls)
    fields = _field_by_any_name(desc)
    for name, text in path.items():
        _scalar_text(desc.fields_by_name[name], text)
    values: dict[str, Any] = _query_values(desc, path, query, body_route=body is not None)
    if body is not None:
        _body_object(desc, body)
        for key, value in body.items():
            fd = fields.get(key)
            if fd is not None and fd.name in path and str(value) != path[fd.name]:
                raise _invalid(f"{fd.name} is a path variable; the body gives another value", fd.name)
        values = {k: v for k, v in body.items() if (fd := fields.get(k)) is None or fd.name not in path}
    values.update(path)
    message = req_cls()
    try:
        json_format.ParseDict(values, message)
    except json_format.ParseError as exc:
        raise _invalid(_parse_problem(str(exc))) from None
    except (ValueError, TypeError, RecursionError):
        raise _invalid("The request does not fit the contract") from None
    return message


def _parse_problem(text: str) -> str:
    """json_format's message names the field; keep it short and free of values."""
    head = text.split(":")[0]
    return f"The request does not fit the contract ({head[:120]})"
