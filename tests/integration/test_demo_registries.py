"""The demo registries over real sockets on 127.0.0.1: gRPC population and business, REST tax."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway._pb.registry.business.v1 import business_pb2, business_pb2_grpc
from gateway._pb.registry.population.v1 import population_pb2, population_pb2_grpc
from gateway.core.identifiers import make_national_id
from gateway.demo.data import DemoData, generate
from gateway.demo.registries import Faults, start_grpc_registry, start_tax_registry
from tests.support import grpc_stub

ATTESTATION = "/api/v2/attestations-revenu"


@pytest.fixture(scope="module")
def data() -> DemoData:
    return generate(seed=3, persons=300)


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
async def channel(data: DemoData, faults: Faults) -> AsyncIterator[grpc.aio.Channel]:
    server, port = await start_grpc_registry(data, host="127.0.0.1", port=0, faults=faults)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)


@pytest.fixture
async def tax(data: DemoData, faults: Faults) -> AsyncIterator[httpx.AsyncClient]:
    handle, port = await start_tax_registry(data, host="127.0.0.1", port=0, faults=faults)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        await handle.stop()


async def test_get_person_returns_the_register_entry(channel: grpc.aio.Channel, data: DemoData) -> None:
    household = next(h for h in data.households if len(h.members) >= 3)
    person = data.person(household.adults[0])
    assert person is not None
    stub = grpc_stub(population_pb2_grpc.PopulationRegistryStub, channel)
    reply = await stub.GetPerson(population_pb2.GetPersonRequest(national_id=person.national_id))
    assert (reply.national_id, reply.family_name) == (person.national_id, person.family_name)
    assert (reply.birth_date.year, reply.birth_date.month) == (
        person.birth_date.year,
        person.birth_date.month,
    )
    assert reply.address.postcode == person.address.postcode
    assert list(reply.nationalities) == list(person.nationalities)
    assert {m.national_id for m in reply.household_members} == set(household.members) - {person.national_id}


async def test_get_person_answers_not_found_for_an_unknown_id(channel: grpc.aio.Channel) -> None:
    stub = grpc_stub(population_pb2_grpc.PopulationRegistryStub, channel)
    unknown = make_national_id(dt.date(1850, 1, 1), 0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetPerson(population_pb2.GetPersonRequest(national_id=unknown))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_get_person_answers_invalid_argument_for_a_malformed_id(channel: grpc.aio.Channel) -> None:
    stub = grpc_stub(population_pb2_grpc.PopulationRegistryStub, channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetPerson(population_pb2.GetPersonRequest(national_id="1234"))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_get_company_returns_the_register_entry(channel: grpc.aio.Channel, data: DemoData) -> None:
    company = data.companies[0]
    stub = grpc_stub(business_pb2_grpc.BusinessRegistryStub, channel)
    reply = await stub.GetCompany(business_pb2.GetCompanyRequest(rcs_number=company.rcs_number))
    assert (reply.rcs_number, reply.name) == (company.rcs_number, company.name)
    assert reply.share_capital.currency_code == "EUR"
    assert (
        reply.share_capital.units * 100 + reply.share_capital.nanos // 10_000_000
        == company.share_capital_cents
    )
    assert [m.family_name for m in reply.managers] == [m.family_name for m in company.managers]


async def test_get_company_answers_not_found_for_an_unknown_number(channel: grpc.aio.Channel) -> None:
    stub = grpc_stub(business_pb2_grpc.BusinessRegistryStub, channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetCompany(business_pb2.GetCompanyRequest(rcs_number="B1"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_grpc_health_reports_serving(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "registry.population.v1.PopulationRegistry", "registry.business.v1.BusinessRegistry"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_grpc_fail_rate_answers_unavailable(
    channel: grpc.aio.Channel, data: DemoData, faults: Faults
) -> None:
    faults.fail_rate = 1.0
    stub = grpc_stub(population_pb2_grpc.PopulationRegistryStub, channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetPerson(population_pb2.GetPersonRequest(national_id=data.persons[0].national_id))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_grpc_delay_makes_the_call_time_out(
    channel: grpc.aio.Channel, data: DemoData, faults: Faults
) -> None:
    faults.delay_s = 0.5
    stub = grpc_stub(population_pb2_grpc.PopulationRegistryStub, channel)
    request = population_pb2.GetPersonRequest(national_id=data.persons[0].national_id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetPerson(request, timeout=0.1)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_tax_registry_answers_in_its_own_dialect(tax: httpx.AsyncClient, data: DemoData) -> None:
    record = data.incomes[0]
    response = await tax.get(
        ATTESTATION, params={"matricule": record.national_id, "annee": record.fiscal_year}
    )
    assert response.status_code == 200
    assert response.json() == {
        "attestation": {
            "contribuable": {"matricule": record.national_id},
            "exercice": record.fiscal_year,
            "revenuImposable": {"montant": record.amount_text, "devise": "EUR"},
            "classeImpot": record.tax_class.value,
            "dateEmission": record.issued_on.isoformat(),
        }
    }


async def test_tax_registry_answers_404_for_an_unknown_year(tax: httpx.AsyncClient, data: DemoData) -> None:
    response = await tax.get(ATTESTATION, params={"matricule": data.persons[0].national_id, "annee": 1995})
    assert response.status_code == 404
    assert response.json()["erreur"]["code"] == "CONTRIBUABLE_INCONNU"


@pytest.mark.parametrize(
    "params",
    [
        {"matricule": "123", "annee": "2024"},
        {"annee": "2024"},
        {"matricule": "1983041212318", "annee": "vingt"},
        {"matricule": "1983041212318", "annee": "2999"},
    ],
)
async def test_tax_registry_answers_400_for_bad_parameters(
    tax: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await tax.get(ATTESTATION, params=params)
    assert response.status_code == 400
    assert response.json()["erreur"]["code"] == "REQUETE_INVALIDE"


async def test_tax_registry_health(tax: httpx.AsyncClient) -> None:
    response = await tax.get("/api/v2/sante")
    assert (response.status_code, response.json()) == (200, {"statut": "ok"})


async def test_tax_fail_rate_answers_503(tax: httpx.AsyncClient, data: DemoData, faults: Faults) -> None:
    faults.fail_rate = 1.0
    record = data.incomes[0]
    response = await tax.get(
        ATTESTATION, params={"matricule": record.national_id, "annee": record.fiscal_year}
    )
    assert response.status_code == 503


async def test_tax_garbage_answers_200_with_a_body_that_is_not_json(
    tax: httpx.AsyncClient, data: DemoData, faults: Faults
) -> None:
    faults.garbage = True
    record = data.incomes[0]
    response = await tax.get(
        ATTESTATION, params={"matricule": record.national_id, "annee": record.fiscal_year}
    )
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


async def test_tax_delay_is_applied_and_can_be_lifted_at_run_time(
    tax: httpx.AsyncClient, data: DemoData, faults: Faults
) -> None:
    record = data.incomes[0]
    params = {"matricule": record.national_id, "annee": str(record.fiscal_year)}
    faults.delay_s = 0.3
    started = time.perf_counter()
    assert (await tax.get(ATTESTATION, params=params)).status_code == 200
    assert time.perf_counter() - started >= 0.3
    faults.delay_s = 0
    started = time.perf_counter()
    await asyncio.wait_for(tax.get(ATTESTATION, params=params), timeout=0.25)
