"""Operations described by the contracts in ``proto/``, read from protobuf descriptors.

Everything the pipeline needs to know about a registry operation (which request
field is the data subject, which formats to validate, which category each
response field belongs to, its REST route) comes from the contract's options.
No registry field name is written in the gateway.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

__all__ = ["FieldSpec", "Operation", "load_generated_modules", "load_operations", "options_module"]

_GENERATED_PACKAGE = "gateway._pb"


def options_module() -> Any:
    return importlib.import_module(f"{_GENERATED_PACKAGE}.passerelle.options.v1.options_pb2")


def load_generated_modules() -> None:
    """Import every generated ``*_pb2`` module so that the descriptor pool knows all contracts."""
    package = importlib.import_module(_GENERATED_PACKAGE)
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{_GENERATED_PACKAGE}."):
        if info.name.endswith("_pb2"):
            importlib.import_module(info.name)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    json_name: str
    category: str          # e.g. "NAME"; "" when the contract marks none


@dataclass(frozen=True)
class Operation:
    service: str           # "registry.population.v1.PopulationRegistry"
    method: str            # "GetPerson"
    request_cls: type[Message]
    response_cls: type[Message]
    subject_field: str     # request field naming the data subject, "" if none
    subject_kind: str      # "NATURAL_PERSON" | "LEGAL_PERSON" | ""
    formats: dict[str, str]              # request field -> identifier format
    response_fields: tuple[FieldSpec, ...]
    http_method: str       # "GET", "" when the contract has no REST mapping
    http_path: str         # "/v1/population/persons/{national_id}"
    idempotent: bool
    version: str           # "v1"
    provider: str

    @property
    def full_name(self) -> str:
        return f"{self.service}/{self.method}"

    @property
    def grpc_path(self) -> str:
        return f"/{self.service}/{self.method}"

    @property
    def field_categories(self) -> dict[str, str]:
        return {f.name: f.category for f in self.response_fields}

    @property
    def request_descriptor(self) -> Descriptor:
        return self.request_cls.DESCRIPTOR


def _enum_suffix(field_options: Any, ext: Any, prefix: str) -> str:
    if not field_options.HasExtension(ext):
        return ""
    value = field_options.Extensions[ext]
    name = ext.enum_type.values_by_number[value].name
    return "" if name.endswith("_UNSPECIFIED") else name.removeprefix(prefix)


def _operation(service: ServiceDescriptor, method: MethodDescriptor) -> Operation:
    opts = options_module()
    req, resp = method.input_type, method.output_type
    subject_field, subject_kind, formats = "", "", {}
    for f in req.fields:
        fo = f.GetOptions()
        kind = _enum_suffix(fo, opts.data_subject, "SUBJECT_KIND_")
        if kind:
            subject_field, subject_kind = f.name, kind
        fmt = _enum_suffix(fo, opts.format, "IDENTIFIER_FORMAT_")
        if fmt:
            formats[f.name] = fmt
    fields = tuple(
        FieldSpec(f.name, f.json_name, _enum_suffix(f.GetOptions(), opts.category, "DATA_CATEGORY_"))
        for f in resp.fields
    )
    http_method, http_path = _http_rule(method)
    so = service.GetOptions()
    return Operation(
        service=service.full_name,
        method=method.name,
        request_cls=message_factory.GetMessageClass(req),
        response_cls=message_factory.GetMessageClass(resp),
        subject_field=subject_field,
        subject_kind=subject_kind,
        formats=formats,
        response_fields=fields,
        http_method=http_method,
        http_path=http_path,
        idempotent=method.GetOptions().idempotency_level != 0,
        version=service.full_name.split(".")[-2],
        provider=so.Extensions[opts.provider] if so.HasExtension(opts.provider) else "",
    )


def _http_rule(method: MethodDescriptor) -> tuple[str, str]:
    mo = method.GetOptions()
    if not mo.HasExtension(annotations_pb2.http):
        return "", ""
    rule = mo.Extensions[annotations_pb2.http]
    kind = rule.WhichOneof("pattern")
    if kind in (None, "custom"):
        return "", ""
    return kind.upper(), getattr(rule, kind)


def load_operations(service_names: list[str]) -> dict[str, Operation]:
    """Operations of the named services, keyed by ``service/method``. Raises ``KeyError`` if unknown."""
    load_generated_modules()
    pool = descriptor_pool.Default()
    ops: dict[str, Operation] = {}
    for name in service_names:
        service = pool.FindServiceByName(name)
        for method in service.methods:
            if method.client_streaming or method.server_streaming:
                continue
            op = _operation(service, method)
            ops[op.full_name] = op
    return ops


def field_descriptor(op: Operation, name: str) -> FieldDescriptor:
    return op.request_descriptor.fields_by_name[name]
