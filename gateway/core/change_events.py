"""Registries' change-event streams, read from the contracts (the ``change_events`` method option).

A registry rpc marked ``change_events = "PersonChanged"`` is server streaming; by convention
(``proto/passerelle/options/v1/options.proto``):

- its request holds one ``uint64`` field: the sequence to read after (the gateway's cursor);
- each streamed envelope holds a ``uint64 sequence``, a ``string event_id`` and one field of the
  change message;
- the change message names its subject (``data_subject``), the changed categories (a repeated
  ``DataCategory``), the effective date (``google.type.Date``) and the data after the change (one
  message field of the contract's package: the *payload*, minimised per subscriber).

A contract that does not follow it is refused at start (``ValueError``). The gateway never names a
registry field: everything here comes from the descriptors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from gateway.core.contracts import (
    Operation,
    change_events_of,
    load_generated_modules,
    options_module,
    payload_operation,
)

__all__ = ["MAX_SEQUENCE", "ChangeEvent", "EventStream", "categories_of", "load_event_streams", "read_event",
           "sequence_of"]

_U64 = FieldDescriptor.TYPE_UINT64
#: The largest sequence the gateway keeps: the stores' cursors are signed 64-bit integers. A larger one
#: (garbage, a registry's bug) is a bad event, and never moves the cursor past every later event.
MAX_SEQUENCE = 2**63 - 1


@dataclass(frozen=True)
class EventStream:
    """One registry's change-event rpc and the shape of its events."""

    service: str                 # "registry.population.v1.PopulationRegistry"
    method: str                  # "WatchChanges"
    request_cls: type[Message]
    envelope_cls: type[Message]
    change_cls: type[Message]
    cursor_field: str            # "after_sequence"
    change_field: str            # the envelope's field holding the change: "change"
    subject_field: str           # "national_id"
    categories_field: str        # "changed"
    effective_field: str         # "effective_date" ("" when the change message has none)
    payload_field: str           # "person"
    #: The payload as an operation's answer: field categories and display names for mandates,
    #: minimisation and the citizen's history; its ``full_name`` is what a mandate names.
    payload: Operation

    @property
    def full_name(self) -> str:
        return f"{self.service}/{self.method}"

    @property
    def grpc_path(self) -> str:
        return f"/{self.service}/{self.method}"

    @property
    def event_type(self) -> str:
        """The change message's full name ("registry.population.v1.PersonChanged"): the CloudEvents type."""
        return str(self.change_cls.DESCRIPTOR.full_name)


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One event as the gateway keeps it: the registry's envelope, parsed; plain data."""

    sequence: int
    event_id: str
    event_type: str
    subject: str                  # the subject's identifier as the registry gave it (never logged)
    categories: tuple[str, ...]   # ("ADDRESS",)
    effective_date: str           # "2026-12-01", "" when none
    change: bytes                 # the change message, binary protobuf (what is minimised and delivered)


def _one(fields: list[FieldDescriptor], where: str, what: str) -> FieldDescriptor:
    if len(fields) != 1:
        raise ValueError(f"{where}: needs exactly one {what}")
    return fields[0]


def _enum_suffix(f: FieldDescriptor, ext: Any) -> str:
    fo = f.GetOptions()
    if not fo.HasExtension(ext):
        return ""
    name = str(ext.enum_type.values_by_number[fo.Extensions[ext]].name)
    return "" if name.endswith("_UNSPECIFIED") else name


def _stream(service: ServiceDescriptor, method: MethodDescriptor, change_name: str) -> EventStream:
    where = f"{service.full_name}/{method.name} (change_events {change_name})"
    if not method.server_streaming or method.client_streaming:
        raise ValueError(f"{where}: a change-event rpc is server streaming")
    package = service.file.package
    change: Descriptor = descriptor_pool.Default().FindMessageTypeByName(f"{package}.{change_name}")
    envelope, request = method.output_type, method.input_type
    cursor = _one([f for f in request.fields if f.type == _U64], where, "uint64 field in the request")
    _one([f for f in envelope.fields if f.name == "sequence" and f.type == _U64], where, "uint64 sequence")
    _one([f for f in envelope.fields if f.name == "event_id" and f.type == FieldDescriptor.TYPE_STRING],
         where, "string event_id")  # fmt: skip
    holder = _one([f for f in envelope.fields if f.message_type is change], where, f"field of {change_name}")
    opts = options_module()
    subject = _one([f for f in change.fields if _enum_suffix(f, opts.data_subject)], where, "data_subject field")
    categories = _one([f for f in change.fields if f.enum_type is not None and f.enum_type.full_name
                       == "passerelle.options.v1.DataCategory" and f.label == FieldDescriptor.LABEL_REPEATED],
                      where, "repeated DataCategory field")  # fmt: skip
    dates = [f for f in change.fields if f.message_type is not None and f.message_type.full_name == "google.type.Date"]
    payload = _one([f for f in change.fields if f.message_type is not None
                    and f.message_type.full_name.startswith(package + ".")], where, "payload message field")
    return EventStream(
        service=service.full_name, method=method.name,
        request_cls=message_factory.GetMessageClass(request), envelope_cls=message_factory.GetMessageClass(envelope),
        change_cls=message_factory.GetMessageClass(change), cursor_field=cursor.name, change_field=holder.name,
        subject_field=subject.name, categories_field=categories.name,
        effective_field=dates[0].name if len(dates) == 1 else "", payload_field=payload.name,
        payload=payload_operation(service, method, payload.message_type),
    )  # fmt: skip


def load_event_streams(service_names: list[str]) -> dict[str, EventStream]:
    """The change-event rpcs of the named services, keyed by ``service/method``; ``KeyError`` if a service
    is unknown, ``ValueError`` if a marked rpc does not follow the convention."""
    load_generated_modules()
    pool = descriptor_pool.Default()
    out: dict[str, EventStream] = {}
    for name in service_names:
        service = pool.FindServiceByName(name)
        for method in service.methods:
            change_name = change_events_of(method)
            if change_name:
                stream = _stream(service, method, change_name)
                out[stream.full_name] = stream
    return out


def _date_text(date: Any) -> str:
    if not date.year:
        return ""
    return f"{date.year:04d}-{date.month:02d}-{date.day:02d}"


def sequence_of(envelope: Message) -> int:
    """The envelope's sequence, 0 when it has none or one beyond ``MAX_SEQUENCE`` (not a position to keep)."""
    sequence = int(getattr(envelope, "sequence"))  # noqa: B009
    return sequence if 0 < sequence <= MAX_SEQUENCE else 0


def categories_of(stream: EventStream, change: Message) -> tuple[str, ...]:
    """The changed categories a change message names, without the prefix: ("ADDRESS",)."""
    enum = change.DESCRIPTOR.fields_by_name[stream.categories_field].enum_type
    return tuple(
        enum.values_by_number[v].name.removeprefix("DATA_CATEGORY_")
        for v in getattr(change, stream.categories_field) if v in enum.values_by_number
    )  # fmt: skip


def read_event(stream: EventStream, envelope: Message) -> ChangeEvent:
    """The plain event of one streamed envelope; ``ValueError`` when it has no sequence (1..``MAX_SEQUENCE``),
    id or subject."""
    change = getattr(envelope, stream.change_field)
    sequence, event_id = sequence_of(envelope), str(getattr(envelope, "event_id"))  # noqa: B009
    subject = str(getattr(change, stream.subject_field))
    if sequence <= 0 or not event_id or not subject or len(event_id) > 200:
        raise ValueError("a change event needs a sequence, an event id (at most 200 characters) and a subject")
    categories = categories_of(stream, change)
    effective = _date_text(getattr(change, stream.effective_field)) if stream.effective_field else ""
    return ChangeEvent(sequence, event_id, stream.event_type, subject, categories, effective,
                       change.SerializeToString(deterministic=True))
