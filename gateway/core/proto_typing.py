"""Typed access to the protobuf runtime where its stubs fall short, in one place.

types-protobuf leaves out ``Message.DiscardUnknownFields`` and ``FieldDescriptor.json_name``, types
``Message.DESCRIPTOR`` as the pure-Python or the upb descriptor, and googleapis-common-protos' generated
stubs type the ``google.api.http`` method option as a plain field rather than the extension it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from google.api import annotations_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

if TYPE_CHECKING:
    from google.api.http_pb2 import HttpRule
    from google.protobuf.descriptor_pb2 import MethodOptions
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

__all__ = ["HTTP_OPTION", "descriptor_of", "discard_unknown_fields", "json_name"]

#: The ``google.api.http`` option of an rpc, typed as the MethodOptions extension holding an HttpRule.
HTTP_OPTION = cast("_ExtensionFieldDescriptor[MethodOptions, HttpRule]", annotations_pb2.http)


def descriptor_of(cls: type[Message] | Message) -> Descriptor:
    """A message's descriptor (the upb descriptor passes ``isinstance`` of the Python one)."""
    descriptor = cls.DESCRIPTOR
    if not isinstance(descriptor, Descriptor):
        raise TypeError(f"{descriptor!r} is not a message descriptor")
    return descriptor


def discard_unknown_fields(message: Message) -> None:
    """Drop the fields unknown to our contract, in nested messages too."""
    message.DiscardUnknownFields()  # type: ignore[attr-defined]  # in the runtime, not in types-protobuf


def json_name(field: FieldDescriptor) -> str:
    """The field's proto3 JSON name (``json_name`` option, else lowerCamelCase)."""
    return str(field.json_name)  # type: ignore[attr-defined]  # in the runtime, not in types-protobuf
