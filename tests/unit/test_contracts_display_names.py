"""Every response field of every registry contract has a name for people in French, German and English.

The citizen's history names the data that left by these names, never by the field's name. The walk
covers every service of every ``registry.*`` contract compiled from ``proto/`` and every field of
its answers, nested ones included (dotted paths), as the gateway itself reads them.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

from gateway.core.contracts import Operation, load_generated_modules, load_operations

LANGUAGES = ("fr", "de", "en")


def registry_operations() -> list[Operation]:
    load_generated_modules()
    package = importlib.import_module("gateway._pb.registry")
    services: list[str] = []
    for info in pkgutil.walk_packages(package.__path__, prefix="gateway._pb.registry."):
        if info.name.endswith("_pb2"):
            services += [s.full_name for s in importlib.import_module(info.name).DESCRIPTOR.services_by_name.values()]
    return list(load_operations(services).values())


OPERATIONS = registry_operations()


def test_the_walk_sees_every_registry_contract_and_nested_fields() -> None:
    services = {op.service for op in OPERATIONS}
    assert {"registry.population.v1.PopulationRegistry", "registry.business.v1.BusinessRegistry",
            "registry.tax.v1.TaxRegistry"} <= services  # fmt: skip
    paths = {path for op in OPERATIONS for path in op.field_display_names}
    assert {"household_members.given_names", "address.street", "managers.role"} <= paths


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.full_name)
def test_every_response_field_has_a_display_name_in_each_language(op: Operation) -> None:
    missing = [f"{path} ({lang})" for path, names in op.field_display_names.items()
               for lang in LANGUAGES if not names.get(lang, "").strip()]  # fmt: skip
    assert missing == [], f"{op.full_name}: response fields without a display name: {missing}"


def test_given_and_family_names_are_told_apart() -> None:
    person = next(op for op in OPERATIONS if op.full_name.endswith("/GetPerson")).field_display_names
    for lang in LANGUAGES:
        assert person["given_names"][lang] != person["family_name"][lang]
