"""Every person an answer can disclose is marked in its contract, so that they see the disclosure.

The walk covers every message of every ``registry.*`` contract compiled from ``proto/``: a field of
a nested message that looks like a person's identifier (category IDENTIFIER, format NATIONAL_ID, or
a name like ``national_id``, ``*_national_id``, ``matricule``) must carry ``nested_subject``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, ServiceDescriptor

from gateway.core.contracts import load_generated_modules, options_module, unmarked_nested_identifiers


def registry_messages() -> list[Descriptor]:
    """Every registry message but the envelopes of batch methods (``batch_of``): the gateway never
    answers with one; each item inside is minimised and disclosed as the single method's answer. Nor
    the envelopes and change messages of change-event rpcs (``change_events``): their subject is the
    change's ``data_subject``, and their payload (a message walked here) is minimised and disclosed
    like an answer."""
    load_generated_modules()
    package = importlib.import_module("gateway._pb.registry")
    found: list[Descriptor] = []
    envelopes: set[str] = set()
    for info in pkgutil.walk_packages(package.__path__, prefix="gateway._pb.registry."):
        if info.name.endswith("_pb2"):
            file = importlib.import_module(info.name).DESCRIPTOR
            found += file.message_types_by_name.values()
            envelopes |= batch_envelopes(file.services_by_name.values())
    return [m for m in found if m.full_name not in envelopes]


def batch_envelopes(services: Iterable[ServiceDescriptor]) -> set[str]:
    batch_of, change_events = options_module().batch_of, options_module().change_events
    out: set[str] = set()
    for method in (m for s in services for m in s.methods):
        if method.GetOptions().HasExtension(change_events):
            out |= {method.output_type.full_name}
            out |= {f.message_type.full_name for f in method.output_type.fields if f.message_type is not None}
        if method.GetOptions().HasExtension(batch_of):
            out |= {method.input_type.full_name, method.output_type.full_name}
            out |= {f.message_type.full_name for f in method.output_type.fields if f.message_type is not None}
    return out


MESSAGES = registry_messages()


def test_the_walk_sees_every_registry_contract() -> None:
    packages = {m.file.package for m in MESSAGES}
    assert {"registry.population.v1", "registry.business.v1", "registry.tax.v1"} <= packages


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.full_name)
def test_no_nested_person_identifier_is_unmarked(message: Descriptor) -> None:
    assert unmarked_nested_identifiers(message) == [], (
        f"{message.full_name}: mark these with (passerelle.options.v1.nested_subject) so that each person "
        "disclosed in an answer sees it in their history"
    )


def _synthetic(fields: list[tuple[str, int]]) -> Descriptor:
    """``xtest.v1.Answer`` holding a repeated ``Officer`` with the given string fields, in a pool of its own."""
    opts = options_module()
    pool = descriptor_pool.DescriptorPool()
    for file in (descriptor_pb2.DESCRIPTOR, opts.DESCRIPTOR):
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)
    f = descriptor_pb2.FileDescriptorProto(name="xtest/v1/x.proto", package="xtest.v1", syntax="proto3",
                                           dependency=["passerelle/options/v1/options.proto"])  # fmt: skip
    officer = f.message_type.add(name="Officer")
    for number, (name, category) in enumerate(fields, start=1):
        field = officer.field.add(name=name, number=number, type=9, label=1)
        if category:
            field.options.Extensions[opts.category] = category
    answer = f.message_type.add(name="Answer")
    answer.field.add(name="officers", number=1, type=11, label=3, type_name=".xtest.v1.Officer")
    pool.Add(f)
    answer_type: Descriptor = pool.FindMessageTypeByName("xtest.v1.Answer")
    return answer_type


def test_the_walk_catches_identifiers_by_name_and_by_category() -> None:
    identifier = options_module().DATA_CATEGORY_IDENTIFIER
    answer = _synthetic([("spouse_national_id", 0), ("matricule", 0), ("code", identifier), ("given_names", 0)])
    assert unmarked_nested_identifiers(answer) == ["officers.spouse_national_id", "officers.matricule", "officers.code"]
