"""``message_to_dict`` gives what ``json_format.MessageToDict`` gives, for any message of ours.

Differential, over random messages of every message type of the contracts (proto3: int64 and uint64,
bytes, maps, enums, Timestamp, Any, nested and repeated messages) and of protobuf's own descriptor
messages (proto2: closed enums, presence, doubles, 64-bit integers).
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from typing import Any

import pytest
from google.protobuf import any_pb2, descriptor_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gateway._pb as pb
from gateway._pb.registry.population.v1 import population_pb2
from gateway.core.proto_typing import descriptor_of
from gateway.entrypoints._proto_json import WELL_KNOWN_FORMS, message_to_dict, proto_json

_T = FieldDescriptor


def _all_descriptors() -> list[Descriptor]:
    found: list[Descriptor] = []
    for mod in pkgutil.walk_packages(pb.__path__, pb.__name__ + "."):
        if not mod.name.endswith("_pb2"):
            continue
        module = importlib.import_module(mod.name)
        stack = list(module.DESCRIPTOR.message_types_by_name.values())
        while stack:
            desc = stack.pop()
            if not desc.GetOptions().map_entry:
                found.append(desc)
            stack.extend(desc.nested_types)
    found += [descriptor_pb2.FileDescriptorProto.DESCRIPTOR, descriptor_pb2.FieldDescriptorProto.DESCRIPTOR,
              descriptor_pb2.UninterpretedOption.DESCRIPTOR, descriptor_pb2.FileOptions.DESCRIPTOR]
    return sorted(found, key=lambda d: d.full_name)


DESCRIPTORS = _all_descriptors()
_text = st.text(max_size=8)
_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    _T.CPPTYPE_INT32: st.integers(-(2**31), 2**31 - 1), _T.CPPTYPE_UINT32: st.integers(0, 2**32 - 1),
    _T.CPPTYPE_INT64: st.integers(-(2**63), 2**63 - 1), _T.CPPTYPE_UINT64: st.integers(0, 2**64 - 1),
    _T.CPPTYPE_DOUBLE: st.floats(allow_nan=True, allow_infinity=True),
    _T.CPPTYPE_FLOAT: st.floats(width=32, allow_nan=True, allow_infinity=True),
    _T.CPPTYPE_BOOL: st.booleans(),
}  # fmt: skip


def _scalar(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
    if fd.cpp_type == _T.CPPTYPE_STRING:
        return st.binary(max_size=8) if fd.type == _T.TYPE_BYTES else _text
    if fd.cpp_type == _T.CPPTYPE_ENUM:
        numbers = [v.number for v in fd.enum_type.values]
        if fd.enum_type.is_closed:
            return st.sampled_from(numbers)
        return st.one_of(st.sampled_from(numbers), st.integers(-5, 50))   # open: unknown numbers too
    return _SCALARS[fd.cpp_type]


def _fill(draw: st.DrawFn, msg: Message, depth: int) -> None:
    desc = msg.DESCRIPTOR
    if desc.full_name == "google.protobuf.Timestamp":
        msg.seconds = draw(st.integers(-62135596800, 253402300799))   # type: ignore[attr-defined]
        msg.nanos = draw(st.integers(0, 999_999_999))   # type: ignore[attr-defined]
        return
    if desc.full_name == "google.protobuf.Any":
        msg.Pack(draw(messages_of(descriptor_of(population_pb2.Person), depth + 1)))   # type: ignore[attr-defined]
        return
    if desc.full_name.startswith("google.protobuf."):
        return   # other well-known types: left empty (json_format writes them either way)
    for fd in desc.fields:
        if not draw(st.booleans()):
            continue
        if fd.containing_oneof is not None and msg.WhichOneof(fd.containing_oneof.name):
            continue
        entry = fd.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key_fd, value_fd = entry.fields_by_name["key"], entry.fields_by_name["value"]
            for key in draw(st.lists(_scalar(key_fd), max_size=3)):
                if value_fd.cpp_type == _T.CPPTYPE_MESSAGE:
                    if depth < 3:
                        _fill(draw, getattr(msg, fd.name)[key], depth + 1)
                else:
                    getattr(msg, fd.name)[key] = draw(_scalar(value_fd))
            continue
        if fd.cpp_type == _T.CPPTYPE_MESSAGE:
            if depth >= 3:
                continue
            if fd.is_repeated:
                for _ in range(draw(st.integers(0, 2))):
                    _fill(draw, getattr(msg, fd.name).add(), depth + 1)
            else:
                _fill(draw, getattr(msg, fd.name), depth + 1)
                if not msg.HasField(fd.name):
                    getattr(msg, fd.name).SetInParent()
            continue
        if fd.is_repeated:
            getattr(msg, fd.name).extend(draw(st.lists(_scalar(fd), max_size=3)))
        else:
            setattr(msg, fd.name, draw(_scalar(fd)))


@st.composite
def messages_of(draw: st.DrawFn, desc: Descriptor, depth: int = 0) -> Message:
    msg = GetMessageClass(desc)()
    _fill(draw, msg, depth)
    return msg


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN, and the same types (1 is not 1.0 nor True in JSON text)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("desc", DESCRIPTORS, ids=lambda d: d.full_name)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_message_to_dict_is_json_format_message_to_dict(desc: Descriptor, data: st.DataObject) -> None:
    message = data.draw(messages_of(desc))
    expected = json_format.MessageToDict(message)
    got = message_to_dict(message)
    assert _same(got, expected), (got, expected)


def test_well_known_types_keep_their_own_json_form() -> None:
    ts = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=5)
    expected: Any = "2023-11-14T22:13:20.000000005Z"
    assert message_to_dict(ts) == json_format.MessageToDict(ts) == expected
    value = struct_pb2.Value(string_value="x")
    assert message_to_dict(value) == "x"
    wrapped = any_pb2.Any()
    wrapped.Pack(population_pb2.Person(given_names="Élodie"))
    assert message_to_dict(wrapped) == json_format.MessageToDict(wrapped)


def test_proto_json_writes_compact_utf8_of_the_same_values() -> None:
    person = population_pb2.Person(national_id="1991062434054", given_names="Élodie", family_name="Muller")
    assert proto_json(person) == '{"nationalId":"1991062434054","givenNames":"Élodie","familyName":"Muller"}'.encode()


def test_covers_the_contracts_and_the_field_kinds_that_matter() -> None:
    names = {d.full_name for d in DESCRIPTORS}
    assert "registry.population.v1.Person" in names and "passerelle.gateway.v1.BulkLookupItem" in names
    kinds = {(f.cpp_type, f.type) for d in DESCRIPTORS for f in d.fields}
    for kind in [(_T.CPPTYPE_INT64, _T.TYPE_INT64), (_T.CPPTYPE_UINT64, _T.TYPE_UINT64),
                 (_T.CPPTYPE_ENUM, _T.TYPE_ENUM), (_T.CPPTYPE_STRING, _T.TYPE_BYTES),
                 (_T.CPPTYPE_DOUBLE, _T.TYPE_DOUBLE)]:
        assert kind in kinds


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 0.1, -2.5e300, 5e-324])
def test_doubles_and_their_special_values_as_json_format_writes_them(value: float) -> None:
    message = descriptor_pb2.UninterpretedOption(double_value=value, negative_int_value=-(2**63),
                                                 positive_int_value=2**64 - 1, string_value=b"\x00\xff")
    assert _same(message_to_dict(message), json_format.MessageToDict(message))


def test_the_well_known_forms_are_json_formats_own() -> None:
    from google.protobuf import descriptor_pool, duration_pb2, field_mask_pb2, wrappers_pb2  # noqa: F401  (registered)

    pool = descriptor_pool.Default()
    is_wrapper: Any = json_format._IsWrapperMessage  # type: ignore[attr-defined]  # json_format's own tables
    own_methods: Any = json_format._WKTJSONMETHODS  # type: ignore[attr-defined]
    special = {n for n in WELL_KNOWN_FORMS if is_wrapper(pool.FindMessageTypeByName(n))}
    assert special | set(own_methods) == WELL_KNOWN_FORMS
