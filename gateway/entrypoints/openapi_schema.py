"""OpenAPI schemas derived from protobuf descriptors, following the proto3 JSON mapping.

Field names are the JSON names (lowerCamelCase), 64-bit integers are strings,
enums are their value names; each response field carries its data category
(``x-data-category``) from the contract.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.core.contracts import Operation, options_module

__all__ = ["FORMAT_SCHEMAS", "message_ref", "path_parameters"]

_T = FieldDescriptor
_SCALARS: dict[int, dict[str, Any]] = {
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BYTES: {"type": "string", "format": "byte"},
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_FLOAT: {"type": "number", "format": "float"},
    _T.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _T.TYPE_INT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _T.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _T.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    _T.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    _T.TYPE_INT64: {"type": "string", "format": "int64"},
    _T.TYPE_SINT64: {"type": "string", "format": "int64"},
    _T.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    _T.TYPE_UINT64: {"type": "string", "format": "uint64"},
    _T.TYPE_FIXED64: {"type": "string", "format": "uint64"},
}

#: Path-parameter schemas for the identifier formats the contracts declare.
FORMAT_SCHEMAS: dict[str, dict[str, Any]] = {
    "NATIONAL_ID": {"type": "string", "pattern": "^[0-9]{13}$", "description": "Luxembourg 13-digit national id"},
    "RCS_NUMBER": {"type": "string", "pattern": "^[A-Z][1-9][0-9]{0,5}$", "description": "RCS number, e.g. B123456"},
    "FISCAL_YEAR": {"type": "integer", "minimum": 1990, "maximum": 2100},
}


def message_ref(desc: Descriptor, components: dict[str, Any]) -> dict[str, Any]:
    """Register ``desc`` (and what it uses) in ``components``; return a ``$ref`` to it."""
    name = desc.full_name
    if name not in components:
        components[name] = {}  # placeholder against recursion
        components[name] = _message_schema(desc, components)
    return {"$ref": f"#/components/schemas/{name}"}


def _message_schema(desc: Descriptor, components: dict[str, Any]) -> dict[str, Any]:
    opts = options_module()
    props: dict[str, Any] = {}
    for f in desc.fields:
        schema = _field_schema(f, components)
        fo = f.GetOptions()
        if fo.HasExtension(opts.category):
            category = opts.DataCategory.Name(fo.Extensions[opts.category]).removeprefix("DATA_CATEGORY_")
            schema = {**schema, "x-data-category": category}
        props[f.json_name] = schema
    return {"type": "object", "title": desc.name, "properties": props, "additionalProperties": False}


def _field_schema(f: FieldDescriptor, components: dict[str, Any]) -> dict[str, Any]:
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        value = f.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _single(value, components)}
    single = _single(f, components)
    return {"type": "array", "items": single} if f.is_repeated else single


def _single(f: FieldDescriptor, components: dict[str, Any]) -> dict[str, Any]:
    if f.type == _T.TYPE_ENUM and f.enum_type is not None:
        return {"type": "string", "enum": [v.name for v in f.enum_type.values]}
    if f.type == _T.TYPE_MESSAGE and f.message_type is not None:
        if f.message_type.full_name == "google.protobuf.Timestamp":
            return {"type": "string", "format": "date-time"}
        return message_ref(f.message_type, components)
    return dict(_SCALARS[f.type])


def path_parameters(op: Operation) -> list[dict[str, Any]]:
    import re

    params = []
    for name in re.findall(r"{(\w+)}", op.http_path):
        field = op.request_descriptor.fields_by_name[name]
        fmt = op.formats.get(name, "")
        schema = FORMAT_SCHEMAS.get(fmt) or _single(field, {})
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params
