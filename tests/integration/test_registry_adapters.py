"""Registry adapters over real sockets: every failure becomes a clear gateway reason, within the deadline."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from adapters.registries import FieldMapping, GrpcRegistryAdapter, RestOperationSpec, RestRegistryAdapter
from gateway._pb.registry.tax.v1 import tax_pb2
from gateway.core.contracts import Operation, load_operations
from gateway.core.errors import GatewayError, Reason
from gateway.demo.data import DemoData, generate
from gateway.demo.registries import Faults, start_grpc_registry, start_tax_registry

POP = "registry.population.v1.PopulationRegistry"
TAX = "registry.tax.v1.TaxRegistry"
TAX_SPEC = RestOperationSpec(
    method="GET",
    path="/api/v2/attestations-revenu",
    query={"matricule": "{national_id}", "annee": "{fiscal_year}"},
    root="attestation",
    response={
        "national_id": FieldMapping("contribuable.matricule"),
        "fiscal_year": FieldMapping("exercice", "int"),
        "taxable_income": FieldMapping("revenuImposable.montant", "money", currency="revenuImposable.devise"),
        "tax_class": FieldMapping(
            "classeImpot", "enum", values={"1": "TAX_CLASS_1", "1a": "TAX_CLASS_1A", "2": "TAX_CLASS_2"}
        ),
        "issued_on": FieldMapping("dateEmission", "date"),
    },
)


@dataclass
class Registries:
    data: DemoData
    grpc_port: int
    tax_port: int
    faults: Faults
    tax_faults: Faults
    ops: dict[str, Operation]


@pytest_asyncio.fixture
async def registries() -> AsyncIterator[Registries]:
    data = generate(7, persons=200)
    faults, tax_faults = Faults(), Faults()
    server, gport = await start_grpc_registry(data, faults=faults)
    tax, tport = await start_tax_registry(data, faults=tax_faults)
    try:
        yield Registries(data, gport, tport, faults, tax_faults, load_operations([POP, TAX]))
    finally:
        await server.stop(0)
        await tax.stop()


def grpc_adapter(r: Registries, port: int | None = None) -> GrpcRegistryAdapter:
    ops = {o.method: o for o in r.ops.values() if o.service == POP}
    return GrpcRegistryAdapter(f"127.0.0.1:{port or r.grpc_port}", ops)


def rest_adapter(r: Registries, port: int | None = None) -> RestRegistryAdapter:
    ops = {o.method: o for o in r.ops.values() if o.service == TAX}
    return RestRegistryAdapter(f"http://127.0.0.1:{port or r.tax_port}", ops, {"GetIncomeCertificate": TAX_SPEC})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def taxpayer(r: Registries) -> tuple[str, int]:
    inc = r.data.incomes[0]
    return inc.national_id, inc.fiscal_year


async def expect(reason: Reason, coro: object, within: float) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(GatewayError) as exc:
        await coro  # type: ignore[misc]
    assert exc.value.reason == reason
    assert loop.time() - started < within


async def test_rest_dialect_is_mapped_onto_the_contract(registries: Registries) -> None:
    nid, year = taxpayer(registries)
    adapter = rest_adapter(registries)
    op = registries.ops[f"{TAX}/GetIncomeCertificate"]
    try:
        cert = await adapter.call(
            "GetIncomeCertificate", op.request_cls(national_id=nid, fiscal_year=year), timeout=2, metadata=()
        )
    finally:
        await adapter.close()
    record = registries.data.income(nid, year)
    assert record is not None
    assert isinstance(cert, tax_pb2.IncomeCertificate)
    assert (cert.national_id, cert.fiscal_year, cert.taxable_income.currency_code) == (nid, year, "EUR")
    assert cert.taxable_income.units * 100 + cert.taxable_income.nanos // 10_000_000 == record.taxable_income_cents


async def test_grpc_registry_not_found_and_down(registries: Registries) -> None:
    op = registries.ops[f"{POP}/GetPerson"]
    from datetime import date

    from gateway.core.identifiers import make_national_id

    adapter = grpc_adapter(registries)
    down = grpc_adapter(registries, free_port())
    try:
        ghost = op.request_cls(national_id=make_national_id(date(1902, 2, 2), 1))
        await expect(Reason.SUBJECT_NOT_FOUND, adapter.call("GetPerson", ghost, timeout=2, metadata=()), 2)
        real = op.request_cls(national_id=registries.data.persons[0].national_id)
        await expect(Reason.REGISTRY_UNAVAILABLE, down.call("GetPerson", real, timeout=1, metadata=()), 1.5)
    finally:
        await adapter.close()
        await down.close()


async def test_slow_registries_are_cut_at_the_deadline(registries: Registries) -> None:
    registries.faults.delay_s = registries.tax_faults.delay_s = 5
    g, r = grpc_adapter(registries), rest_adapter(registries)
    nid, year = taxpayer(registries)
    try:
        person = registries.ops[f"{POP}/GetPerson"].request_cls(national_id=nid)
        cert = registries.ops[f"{TAX}/GetIncomeCertificate"].request_cls(national_id=nid, fiscal_year=year)
        await expect(Reason.REGISTRY_TIMEOUT, g.call("GetPerson", person, timeout=0.3, metadata=()), 1.5)
        await expect(Reason.REGISTRY_TIMEOUT, r.call("GetIncomeCertificate", cert, timeout=0.3, metadata=()), 1.5)
    finally:
        await g.close()
        await r.close()


async def test_rest_registry_garbage_failure_and_absence(registries: Registries) -> None:
    nid, year = taxpayer(registries)
    req = registries.ops[f"{TAX}/GetIncomeCertificate"].request_cls(national_id=nid, fiscal_year=year)
    adapter, down = rest_adapter(registries), rest_adapter(registries, free_port())
    try:
        registries.tax_faults.garbage = True
        await expect(Reason.REGISTRY_BAD_RESPONSE, adapter.call("GetIncomeCertificate", req, timeout=2, metadata=()), 2)
        registries.tax_faults.garbage, registries.tax_faults.fail_rate = False, 1.0
        await expect(Reason.REGISTRY_UNAVAILABLE, adapter.call("GetIncomeCertificate", req, timeout=2, metadata=()), 2)
        await expect(Reason.REGISTRY_UNAVAILABLE, down.call("GetIncomeCertificate", req, timeout=1, metadata=()), 1.5)
        registries.tax_faults.fail_rate = 0.0
        unknown = registries.ops[f"{TAX}/GetIncomeCertificate"].request_cls(national_id=nid, fiscal_year=1991)
        await expect(Reason.SUBJECT_NOT_FOUND, adapter.call("GetIncomeCertificate", unknown, timeout=2, metadata=()), 2)
    finally:
        await adapter.close()
        await down.close()


async def test_answer_that_does_not_fit_the_contract_is_bad_response(registries: Registries) -> None:
    nid, year = taxpayer(registries)
    req = registries.ops[f"{TAX}/GetIncomeCertificate"].request_cls(national_id=nid, fiscal_year=year)
    ops = {o.method: o for o in registries.ops.values() if o.service == TAX}
    wrong = RestOperationSpec(
        "GET",
        TAX_SPEC.path,
        TAX_SPEC.query,
        "attestation",
        {"tax_class": FieldMapping("classeImpot", "enum", values={})},
    )
    adapter = RestRegistryAdapter(f"http://127.0.0.1:{registries.tax_port}", ops, {"GetIncomeCertificate": wrong})
    try:
        await expect(Reason.REGISTRY_BAD_RESPONSE, adapter.call("GetIncomeCertificate", req, timeout=2, metadata=()), 2)
    finally:
        await adapter.close()
