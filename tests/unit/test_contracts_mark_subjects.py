"""Every person an answer can disclose is marked in its contract, so that they see the disclosure.

The walk covers every message of every ``registry.*`` contract compiled from ``proto/``: a field of
a nested message that looks like a person's identifier (category IDENTIFIER, format NATIONAL_ID, or
a name like ``national_id``, ``*_national_id``, ``matricule``) must carry ``nested_subject``.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor

from gateway.core.contracts import load_generated_modules, options_module, unmarked_nested_identifiers


def registry_messages() -> list[Descriptor]:
    load_generated_modules()
    package = importlib.import_module("gateway._pb.registry")
    found: list[Descriptor] = []
    for info in pkgutil.walk_packages(package.__path__, prefix="gateway._pb.registry."):
        if info.name.endswith("_pb2"):
            found += importlib.import_module(info.name).DESCRIPTOR.message_types_by_name.values()
    return found


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
    return pool.FindMessageTypeByName("xtest.v1.Answer")


def test_the_walk_catches_identifiers_by_name_and_by_category() -> None:
    identifier = options_module().DATA_CATEGORY_IDENTIFIER
    answer = _synthetic([("spouse_national_id", 0), ("matricule", 0), ("code", identifier), ("given_names", 0)])
    assert unmarked_nested_identifiers(answer) == ["officers.spouse_national_id", "officers.matricule", "officers.code"]
