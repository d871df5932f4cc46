"""Operations described by the contracts in ``proto/``, read from protobuf descriptors.

Everything the pipeline needs to know about a registry operation (which request
field is the data subject, which formats to validate, which category each
response field belongs to, which nested response fields identify other persons,
its REST route) comes from the contract's options. No registry field name is
written in the gateway.

Nested fields are named by dotted paths (``household_members.given_names``); a
repeated field's path names every element. A nested field without a category of
its own takes the category of the field that holds it. Messages of other
packages (``google.type.Date``, ``google.type.Money``) are leaves.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from gateway.core.proto_typing import HTTP_OPTION, descriptor_of

__all__ = [
    "BatchMethod",
    "FieldSpec",
    "NestedSubject",
    "Operation",
    "change_events_of",
    "load_generated_modules",
    "load_operations",
    "options_module",
    "payload_operation",
    "unmarked_nested_identifiers",
]

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
    name: str              # "given_names"; a dotted path for a nested field: "household_members.given_names"
    json_name: str         # "givenNames"; "householdMembers.givenNames"
    category: str          # e.g. "NAME"; "" when the contract marks none
    display_name: tuple[tuple[str, str], ...] = ()   # (("fr", "Prénoms"), ("de", "Vornamen"), ("en", ...))


@dataclass(frozen=True, slots=True)
class NestedSubject:
    """A response field, inside a nested message, that identifies another data subject."""

    path: str              # dotted path of the message that describes the person: "household_members"
    field: str             # the identifier's name in that message: "national_id"
    kind: str              # "NATURAL_PERSON" | "LEGAL_PERSON"
    format: str            # "NATIONAL_ID" | ... | ""

    @property
    def identifier_path(self) -> str:
        return f"{self.path}.{self.field}"


@dataclass(frozen=True, slots=True)
class BatchMethod:
    """A registry rpc answering many requests of one operation at once (the ``batch_of`` option).

    Its request holds ``requests_field``, a repeated field of the operation's request message; its
    response ``results_field``, a repeated field of a message with a oneof of the operation's
    response (``answer_field``) and a ``google.rpc.Status`` (``error_field``), in the same order.
    """

    method: str            # "GetPersons"
    grpc_path: str         # "/registry.population.v1.PopulationRegistry/GetPersons"
    request_cls: type[Message]
    response_cls: type[Message]
    requests_field: str
    results_field: str
    answer_field: str
    error_field: str


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
    nested_fields: tuple[FieldSpec, ...] = ()          # fields of nested messages, dotted paths, depth first
    nested_subjects: tuple[NestedSubject, ...] = ()    # persons an answer may disclose besides its subject
    batch: BatchMethod | None = None                   # the registry's batch method for this one, if any

    @property
    def full_name(self) -> str:
        return f"{self.service}/{self.method}"

    @property
    def grpc_path(self) -> str:
        return f"/{self.service}/{self.method}"

    @cached_property
    def field_categories(self) -> dict[str, str]:
        """Every response field path (top-level names and dotted nested paths) -> its category."""
        return {f.name: f.category for f in (*self.response_fields, *self.nested_fields)}

    @cached_property
    def field_display_names(self) -> dict[str, dict[str, str]]:
        """Every response field path -> its name for people by language (the contract's ``display_name``)."""
        return {f.name: dict(f.display_name) for f in (*self.response_fields, *self.nested_fields)}

    @cached_property
    def json_paths(self) -> dict[str, str]:
        """Field paths by proto3 JSON path and by field path, for field masks."""
        fields = (*self.response_fields, *self.nested_fields)
        return {f.name: f.name for f in fields} | {f.json_name: f.name for f in fields}

    @property
    def request_descriptor(self) -> Descriptor:
        return descriptor_of(self.request_cls)


def _enum_suffix(field_options: Any, ext: Any, prefix: str) -> str:
    if not field_options.HasExtension(ext):
        return ""
    value = field_options.Extensions[ext]
    name = ext.enum_type.values_by_number[value].name
    return "" if name.endswith("_UNSPECIFIED") else name.removeprefix(prefix)


def _operation(service: ServiceDescriptor, method: MethodDescriptor, resp: Descriptor | None = None) -> Operation:
    opts = options_module()
    req, resp = method.input_type, resp or method.output_type
    subject_field, subject_kind, formats = "", "", {}
    for f in req.fields:
        fo = f.GetOptions()
        kind = _enum_suffix(fo, opts.data_subject, "SUBJECT_KIND_")
        if kind:
            subject_field, subject_kind = f.name, kind
        fmt = _enum_suffix(fo, opts.format, "IDENTIFIER_FORMAT_")
        if fmt:
            formats[f.name] = fmt
    fields = tuple(FieldSpec(f.name, f.json_name, _category(f), _display_name(f)) for f in resp.fields)
    nested_fields, nested_subjects = _nested(resp)
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
        nested_fields=nested_fields,
        nested_subjects=nested_subjects,
    )


def _category(f: FieldDescriptor, inherited: str = "") -> str:
    return _enum_suffix(f.GetOptions(), options_module().category, "DATA_CATEGORY_") or inherited


def _display_name(f: FieldDescriptor) -> tuple[tuple[str, str], ...]:
    fo = f.GetOptions()
    ext = options_module().display_name
    if not fo.HasExtension(ext):
        return ()
    names = fo.Extensions[ext]
    return tuple((lang, text) for lang in ("fr", "de", "en") if (text := getattr(names, lang)))


def _contract_message(f: FieldDescriptor) -> Descriptor | None:
    """The message type of ``f`` when it belongs to the contract's own package (not a google.* leaf)."""
    if f.type != FieldDescriptor.TYPE_MESSAGE or f.message_type.GetOptions().map_entry:
        return None
    own = f.containing_type.file.package.split(".")[0]
    return f.message_type if f.message_type.full_name.split(".")[0] == own else None


def _nested(resp: Descriptor) -> tuple[tuple[FieldSpec, ...], tuple[NestedSubject, ...]]:
    """Dotted-path fields of the response's nested messages and the nested subjects among them."""
    opts = options_module()
    fields: list[FieldSpec] = []
    subjects: list[NestedSubject] = []

    def walk(message: Descriptor, path: str, json_path: str, category: str, seen: frozenset[str]) -> None:
        for f in message.fields:
            name, json_name, cat = f"{path}.{f.name}", f"{json_path}.{f.json_name}", _category(f, category)
            fields.append(FieldSpec(name, json_name, cat, _display_name(f)))
            kind = _enum_suffix(f.GetOptions(), opts.nested_subject, "SUBJECT_KIND_")
            if kind:
                fmt = _enum_suffix(f.GetOptions(), opts.format, "IDENTIFIER_FORMAT_")
                subjects.append(NestedSubject(path, f.name, kind, fmt))
            sub = _contract_message(f)
            if sub is not None and sub.full_name not in seen:   # a recursive message stops at its second visit
                walk(sub, name, json_name, cat, seen | {sub.full_name})

    for f in resp.fields:
        sub = _contract_message(f)
        if sub is not None:
            walk(sub, f.name, f.json_name, _category(f), frozenset({resp.full_name, sub.full_name}))
    return tuple(fields), tuple(subjects)


_IDENTIFIER_NAME = re.compile(r"(^|_)(national_id|matricule)$")


def unmarked_nested_identifiers(message: Descriptor) -> list[str]:
    """Dotted paths of fields in ``message``'s nested messages that look like a person's identifier
    (category IDENTIFIER, format NATIONAL_ID, or a name like ``national_id``, ``*_national_id``,
    ``matricule``) but carry no ``nested_subject`` option: persons the answer would disclose unseen."""
    opts = options_module()
    found: list[str] = []

    def walk(desc: Descriptor, path: str, seen: frozenset[str]) -> None:
        for f in desc.fields:
            name = f"{path}.{f.name}"
            fo = f.GetOptions()
            looks_like_id = (
                _enum_suffix(fo, opts.category, "DATA_CATEGORY_") == "IDENTIFIER"
                or _enum_suffix(fo, opts.format, "IDENTIFIER_FORMAT_") == "NATIONAL_ID"
                or bool(_IDENTIFIER_NAME.search(f.name))
            )
            if looks_like_id and not _enum_suffix(fo, opts.nested_subject, "SUBJECT_KIND_"):
                found.append(name)
            sub = _contract_message(f)
            if sub is not None and sub.full_name not in seen:
                walk(sub, name, seen | {sub.full_name})

    for f in message.fields:
        sub = _contract_message(f)
        if sub is not None:
            walk(sub, f.name, frozenset({message.full_name, sub.full_name}))
    return found


def _http_rule(method: MethodDescriptor) -> tuple[str, str]:
    mo = method.GetOptions()
    if not mo.HasExtension(HTTP_OPTION):
        return "", ""
    rule = mo.Extensions[HTTP_OPTION]
    kind = rule.WhichOneof("pattern")
    if kind in (None, "custom"):
        return "", ""
    return kind.upper(), getattr(rule, kind)


def _batch_of(method: MethodDescriptor) -> str:
    mo = method.GetOptions()
    ext = options_module().batch_of
    return str(mo.Extensions[ext]) if mo.HasExtension(ext) else ""


def _batch_method(service: ServiceDescriptor, single: MethodDescriptor, batch: MethodDescriptor) -> BatchMethod:
    """The batch method's shape, checked: a contract that does not follow the convention is refused at start."""
    where = f"{service.full_name}/{batch.name} (batch_of {single.name})"
    requests = [f for f in batch.input_type.fields if f.message_type is single.input_type and _repeated(f)]
    results = [f for f in batch.output_type.fields if f.message_type is not None and _repeated(f)]
    if len(requests) != 1 or len(results) != 1:
        raise ValueError(f"{where}: needs one repeated field of {single.input_type.name} and one of results")
    result = results[0].message_type
    answer = [f for f in result.fields if f.message_type is single.output_type]
    error = [f for f in result.fields if f.message_type is not None and f.message_type.full_name == "google.rpc.Status"]
    if len(answer) != 1 or len(error) != 1:
        raise ValueError(f"{where}: a result holds {single.output_type.name} or google.rpc.Status")
    return BatchMethod(
        batch.name, f"/{service.full_name}/{batch.name}", message_factory.GetMessageClass(batch.input_type),
        message_factory.GetMessageClass(batch.output_type), requests[0].name, results[0].name, answer[0].name,
        error[0].name,
    )


def _repeated(f: FieldDescriptor) -> bool:
    return bool(f.label == FieldDescriptor.LABEL_REPEATED)


def payload_operation(service: ServiceDescriptor, method: MethodDescriptor, payload: Descriptor) -> Operation:
    """An operation whose "answer" is ``payload``: what a change-event rpc (``change_events``) delivers
    about a person, so that mandates name its fields and categories and minimisation works as for a look-up.
    """
    return _operation(service, method, payload)


def change_events_of(method: MethodDescriptor) -> str:
    """The ``change_events`` option of a registry rpc: the change message's name, "" when unmarked."""
    mo = method.GetOptions()
    ext = options_module().change_events
    return str(mo.Extensions[ext]) if mo.HasExtension(ext) else ""


def load_operations(service_names: list[str]) -> dict[str, Operation]:
    """Operations of the named services, keyed by ``service/method``. Raises ``KeyError`` if unknown.

    A batch method (``batch_of``) is no operation of its own: it is the ``batch`` of the one it serves.
    A change-event rpc (``change_events``, server streaming) is none either: the gateway reads it
    (``gateway.core.change_events``) and never serves it to consumers.
    """
    load_generated_modules()
    pool = descriptor_pool.Default()
    ops: dict[str, Operation] = {}
    for name in service_names:
        service = pool.FindServiceByName(name)
        batches = {_batch_of(m): m for m in service.methods if _batch_of(m)}
        for method in service.methods:
            if method.client_streaming or method.server_streaming or _batch_of(method) or change_events_of(method):
                continue
            op = _operation(service, method)
            if method.name in batches:
                op = replace(op, batch=_batch_method(service, method, batches[method.name]))
            ops[op.full_name] = op
    return ops


def field_descriptor(op: Operation, name: str) -> FieldDescriptor:
    field: FieldDescriptor = op.request_descriptor.fields_by_name[name]
    return field
