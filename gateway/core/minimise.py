"""Minimisation by contract, and who besides the subject an answer discloses.

Field paths as in ``consent.fields``: ``given_names``, ``household_members.given_names``.

- ``narrow`` intersects the mandate's allowed paths with a caller's field mask;
- ``minimise`` clears, in place, every field outside the allowed paths and says what is left;
- ``nested_people`` (on the registry's answer, *before* minimisation) finds each person a
  nested subject field names, and ``disclosures`` (after) says which of their fields left.

Every person is found before minimisation so that one whose identifier was minimised
away, but whose name left, is still told.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from gateway.core.contracts import NestedSubject

__all__ = ["Disclosure", "NestedPerson", "disclosures", "minimise", "narrow", "nested_people"]

#: Where a nested message sits: (field name, element index, or -1 for a singular field), outermost first.
Location = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class NestedPerson:
    """A person named in the registry's answer by a nested subject field."""

    identifier: str         # as the registry gave it (e.g. a national id); never recorded in clear
    subject: NestedSubject
    location: Location


@dataclass(frozen=True, slots=True)
class Disclosure:
    """What left about one nested person: their fields, named within their own message."""

    identifier: str
    kind: str               # "NATURAL_PERSON" | "LEGAL_PERSON"
    path: str               # "household_members"
    fields: tuple[str, ...]  # ("given_names", "birth_date")


def _covers(path: str, other: str) -> bool:
    """``path`` is ``other`` or holds it."""
    return other == path or other.startswith(path + ".")


def narrow(allowed: Iterable[str], mask: Iterable[str]) -> frozenset[str]:
    """The allowed paths a field mask keeps: where one holds the other, the narrower one."""
    mask = tuple(mask)
    out = set()
    for a in allowed:
        for m in mask:
            if _covers(a, m):
                out.add(m)
            elif _covers(m, a):
                out.add(a)
    return frozenset(out)


def minimise(message: Message, allowed: frozenset[str]) -> tuple[str, ...]:
    """Clear fields outside ``allowed`` in place; return the paths of the fields left set.

    A path is returned as allowed when its whole field left (``household_members``), else as the
    dotted path of each nested field left set in at least one element (``household_members.given_names``).
    """
    return tuple(_minimise(message, allowed, ""))


def _minimise(message: Message, allowed: frozenset[str], prefix: str) -> list[str]:
    kept: list[str] = []
    for fd, value in message.ListFields():
        path = prefix + fd.name
        if path in allowed:
            kept.append(path)
            continue
        inner = path + "."
        if not _is_message(fd) or not any(a.startswith(inner) for a in allowed):
            message.ClearField(fd.name)
            continue
        left: list[str] = []
        for element in value if _is_repeated(fd) else (value,):
            left += _minimise(element, allowed, inner)
        if left:
            kept += dict.fromkeys(left)
        else:
            message.ClearField(fd.name)
    return kept


def _is_message(fd: FieldDescriptor) -> bool:
    return fd.message_type is not None and not fd.message_type.GetOptions().map_entry


def _is_repeated(fd: FieldDescriptor) -> bool:
    repeated: bool = fd.label == FieldDescriptor.LABEL_REPEATED  # protobuf ships no type information
    return repeated


def nested_people(message: Message, subjects: Sequence[NestedSubject]) -> list[NestedPerson]:
    """Every person with a non-empty identifier in a nested subject field of ``message``."""
    people: list[NestedPerson] = []
    for subject in subjects:
        for location, holder in _messages_at(message, subject.path.split("."), ()):
            identifier = getattr(holder, subject.field)
            if isinstance(identifier, str) and identifier:
                people.append(NestedPerson(identifier, subject, location))
    return people


def _messages_at(message: Message, names: list[str], location: Location) -> Iterator[tuple[Location, Message]]:
    if not names:
        yield location, message
        return
    name, rest = names[0], names[1:]
    fd = message.DESCRIPTOR.fields_by_name[name]
    if _is_repeated(fd):
        for i, element in enumerate(getattr(message, name)):
            yield from _messages_at(element, rest, (*location, (name, i)))
    elif message.HasField(name):
        yield from _messages_at(getattr(message, name), rest, (*location, (name, -1)))


def _at(message: Message, location: Location) -> Message | None:
    for name, index in location:
        if index < 0:
            if not message.HasField(name):
                return None
            message = getattr(message, name)
        else:
            elements = getattr(message, name)
            if index >= len(elements):
                return None
            message = elements[index]
    return message


def disclosures(minimised: Message, people: Sequence[NestedPerson]) -> tuple[Disclosure, ...]:
    """For each person found before minimisation, their fields still set in ``minimised``.

    A person of whom nothing left is left out; a person named twice gets one disclosure with
    the fields of both places. Relies on ``minimise`` keeping the elements of a repeated field
    in place (it clears a field whole or keeps every element).
    """
    found: dict[str, Disclosure] = {}
    for person in people:
        holder = _at(minimised, person.location)
        fields = tuple(fd.name for fd, _ in holder.ListFields()) if holder is not None else ()
        if not fields:
            continue
        before = found.get(person.identifier)
        if before is not None:
            fields = tuple(dict.fromkeys((*before.fields, *fields)))
        found[person.identifier] = Disclosure(person.identifier, person.subject.kind, person.subject.path, fields)
    return tuple(found.values())
