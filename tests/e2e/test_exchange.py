"""The once-only exchange over real sockets, through both front doors."""

from __future__ import annotations

import asyncio
import json
from typing import cast

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from consent import Consent
from gateway._pb.registry.business.v1 import business_pb2, business_pb2_grpc
from gateway._pb.registry.population.v1 import population_pb2, population_pb2_grpc
from gateway._pb.registry.tax.v1 import tax_pb2, tax_pb2_grpc
from gateway.core.clock import now_us
from gateway.core.ports import AuditQuery
from tests.e2e.conftest import DemoStack
from tests.support import grpc_stub

pytestmark = pytest.mark.asyncio(loop_scope="module")

MANDATED_JSON = {"givenNames", "familyName", "birthDate", "address", "householdMembers"}


def adult_with_household(demo: DemoStack) -> str:
    for h in demo.data.households:
        if len(h.members) >= 3:
            return h.members[0]
    raise AssertionError("no household of three")


def taxpayer(demo: DemoStack, year: int = 2024) -> str:
    for p in demo.data.persons:
        if demo.data.income(p.national_id, year) is not None:
            return p.national_id
    raise AssertionError("no taxpayer")


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(cast(grpc.Call, err))  # an AioRpcError has the trailers, code and details it reads
    assert status is not None, "no google.rpc.Status in trailers"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo detail")


async def grpc_get_person(
    demo: DemoStack, nid: str, md: tuple[tuple[str, str], ...], timeout: float = 5
) -> population_pb2.Person:
    stub = grpc_stub(population_pb2_grpc.PopulationRegistryStub, demo.channel)
    person: population_pb2.Person = await stub.GetPerson(
        population_pb2.GetPersonRequest(national_id=nid), metadata=md, timeout=timeout
    )
    return person


# --- allowed lookups -------------------------------------------------------------------------


async def test_rest_lookup_returns_only_the_mandated_fields(demo: DemoStack) -> None:
    nid = adult_with_household(demo)
    r = await demo.rest.get(f"/v1/population/persons/{nid}", headers=demo.headers(**{"x-request-id": "req-42"}))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == MANDATED_JSON
    assert r.headers["x-request-id"] == "req-42"
    assert body["address"]["postcode"].startswith("L-")


async def test_grpc_lookup_returns_only_the_mandated_fields(demo: DemoStack) -> None:
    nid = adult_with_household(demo)
    person = await grpc_get_person(demo, nid, demo.metadata())
    assert {f.name for f, _ in person.ListFields()} == {
        "given_names",
        "family_name",
        "birth_date",
        "address",
        "household_members",
    }


async def test_procurement_gets_a_company(demo: DemoStack) -> None:
    rcs = demo.data.companies[0].rcs_number
    r = await demo.rest.get(f"/v1/business/companies/{rcs}", headers=demo.headers("procurement", "procurement-check"))
    assert r.status_code == 200, r.text
    assert r.json()["rcsNumber"] == rcs
    stub = grpc_stub(business_pb2_grpc.BusinessRegistryStub, demo.channel)
    company = await stub.GetCompany(
        business_pb2.GetCompanyRequest(rcs_number=rcs), metadata=demo.metadata("procurement", "procurement-check")
    )
    assert company.name == r.json()["name"]


async def test_income_certificate_flows_through_the_rest_dialect_adapter_with_consent(demo: DemoStack) -> None:
    nid = taxpayer(demo)
    subject = demo.running.gateway.pseudonymise(nid)
    await demo.running.gateway.consents.add(Consent(f"c-{nid}", subject, "cedies", "student-aid", granted_us=now_us()))
    record = demo.data.income(nid, 2024)
    r = await demo.rest.get(f"/v1/tax/income-certificates/{nid}/2024", headers=demo.headers())
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"fiscalYear", "taxableIncome", "taxClass", "issuedOn"}
    assert body["taxableIncome"]["currencyCode"] == "EUR"
    assert body["taxClass"].startswith("TAX_CLASS_")
    stub = grpc_stub(tax_pb2_grpc.TaxRegistryStub, demo.channel)
    cert = await stub.GetIncomeCertificate(
        tax_pb2.GetIncomeCertificateRequest(national_id=nid, fiscal_year=2024), metadata=demo.metadata()
    )
    assert cert.taxable_income.units == int(record.taxable_income)  # type: ignore[union-attr]
    assert cert.national_id == ""


# --- refusals ----------------------------------------------------------------------------------

REST_REFUSALS = [
    ("no token", {}, 401, "TOKEN_MISSING"),
    ("garbage token", {"authorization": "Bearer not.a.jwt"}, 401, "TOKEN_MALFORMED"),
    ("no purpose", "nopurpose", 400, "PURPOSE_MISSING"),
    ("unknown purpose", "curiosity", 403, "UNKNOWN_PURPOSE"),
    ("no mandate", "sandbox", 403, "NO_MANDATE"),
]


@pytest.mark.parametrize(("case", "how", "status", "reason"), REST_REFUSALS, ids=[c[0] for c in REST_REFUSALS])
async def test_rest_refusals_carry_their_reason_as_problem_json(
    demo: DemoStack, case: str, how: object, status: int, reason: str
) -> None:
    nid = adult_with_household(demo)
    if how == "nopurpose":
        headers = {"authorization": f"Bearer {demo.token()}"}
    elif how == "curiosity":
        headers = demo.headers(purpose="curiosity")
    elif how == "sandbox":
        headers = demo.headers("sandbox")
    else:
        headers = dict(how)  # type: ignore[call-overload]
    r = await demo.rest.get(f"/v1/population/persons/{nid}", headers=headers)
    assert (r.status_code, r.headers["content-type"]) == (status, "application/problem+json")
    assert r.json()["reason"] == reason
    assert nid not in r.text


@pytest.mark.parametrize(
    ("md", "code", "reason"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING"),
        ("sandbox", grpc.StatusCode.PERMISSION_DENIED, "NO_MANDATE"),
        ("curiosity", grpc.StatusCode.PERMISSION_DENIED, "UNKNOWN_PURPOSE"),
    ],
)
async def test_grpc_refusals_carry_error_info(demo: DemoStack, md: object, code: grpc.StatusCode, reason: str) -> None:
    nid = adult_with_household(demo)
    if md == "sandbox":
        md = demo.metadata("sandbox")
    elif md == "curiosity":
        md = demo.metadata(purpose="curiosity")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await grpc_get_person(demo, nid, md)  # type: ignore[arg-type]
    assert exc.value.code() == code
    assert error_info(exc.value).reason == reason


@pytest.mark.parametrize("bad", ["123", "19900101001xx", "1990010100199", "19901301001" + "59"])
async def test_malformed_national_id_is_invalid_argument_naming_the_field(demo: DemoStack, bad: str) -> None:
    r = await demo.rest.get(f"/v1/population/persons/{bad}", headers=demo.headers())
    assert (r.status_code, r.json()["reason"], r.json()["field"]) == (400, "INVALID_ARGUMENT", "national_id")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await grpc_get_person(demo, bad, demo.metadata())
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(exc.value).metadata["field"] == "national_id"


async def test_malformed_rcs_number_is_refused(demo: DemoStack) -> None:
    r = await demo.rest.get("/v1/business/companies/X0", headers=demo.headers("procurement", "procurement-check"))
    assert (r.status_code, r.json()["field"]) == (400, "rcs_number")


async def test_unknown_path_and_method_are_unknown_service(demo: DemoStack) -> None:
    r = await demo.rest.get("/v1/nothing/here", headers=demo.headers())
    assert (r.status_code, r.json()["reason"]) == (404, "UNKNOWN_SERVICE")
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = demo.channel.unary_unary(
        "/registry.vehicles.v1.VehicleRegistry/GetVehicle"
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call(b"", metadata=demo.metadata())
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error_info(exc.value).reason == "UNKNOWN_SERVICE"


async def test_malformed_protobuf_bytes_are_invalid_argument(demo: DemoStack) -> None:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = demo.channel.unary_unary(
        "/registry.population.v1.PopulationRegistry/GetPerson"
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call(b"\xff\xff\xff\xff", metadata=demo.metadata())
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_oversized_grpc_message_is_refused(demo: DemoStack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await grpc_get_person(demo, "1" * 200_000, demo.metadata())
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_oversized_header_is_refused(demo: DemoStack) -> None:
    r = await demo.rest.get("/v1/population/persons/x", headers={"x-purpose": "a" * 70_000})
    assert r.status_code in (400, 413, 431)


async def test_consent_based_lookup_without_consent_is_refused(demo: DemoStack) -> None:
    nid = demo.data.persons[-1].national_id
    r = await demo.rest.get(f"/v1/tax/income-certificates/{nid}/2024", headers=demo.headers())
    assert (r.status_code, r.json()["reason"]) == (403, "CONSENT_REQUIRED")


async def test_unknown_person_is_subject_not_found(demo: DemoStack) -> None:
    from datetime import date

    from gateway.core.identifiers import make_national_id

    ghost = make_national_id(date(1901, 1, 1), 999)
    r = await demo.rest.get(f"/v1/population/persons/{ghost}", headers=demo.headers())
    assert (r.status_code, r.json()["reason"]) == (404, "SUBJECT_NOT_FOUND")


# --- registry faults -------------------------------------------------------------------------------


async def test_slow_registry_is_cut_at_the_callers_deadline(demo: DemoStack) -> None:
    demo.faults.delay_s = 3.0
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await grpc_get_person(demo, adult_with_household(demo), demo.metadata(), timeout=0.5)
        assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert loop.time() - started < 1.5
        started = loop.time()
        r = await demo.rest.get(f"/v1/population/persons/{adult_with_household(demo)}", headers=demo.headers())
        assert (r.status_code, r.json()["reason"]) == (504, "REGISTRY_TIMEOUT")
        assert loop.time() - started < 2.9  # the registry's configured timeout (2 s), not its 3 s delay
    finally:
        demo.faults.delay_s = 0.0


async def test_failing_registry_is_registry_unavailable(demo: DemoStack) -> None:
    demo.faults.fail_rate = 1.0
    try:
        r = await demo.rest.get(f"/v1/population/persons/{adult_with_household(demo)}", headers=demo.headers())
        assert (r.status_code, r.json()["reason"]) == (503, "REGISTRY_UNAVAILABLE")
    finally:
        demo.faults.fail_rate = 0.0


async def test_garbage_from_the_rest_registry_is_bad_response(demo: DemoStack) -> None:
    nid = taxpayer(demo, 2023)
    subject = demo.running.gateway.pseudonymise(nid)
    await demo.running.gateway.consents.add(Consent(f"g-{nid}", subject, "cedies", "student-aid", granted_us=now_us()))
    demo.tax_faults.garbage = True
    try:
        r = await demo.rest.get(f"/v1/tax/income-certificates/{nid}/2023", headers=demo.headers())
        assert (r.status_code, r.json()["reason"]) == (502, "REGISTRY_BAD_RESPONSE")
    finally:
        demo.tax_faults.garbage = False


# --- audit, health, reflection, OpenAPI ---------------------------------------------------------------


async def test_every_authenticated_exchange_has_its_audit_row(demo: DemoStack) -> None:
    nid = adult_with_household(demo)
    cases = [("ok", "cedies", "student-aid"), ("nm", "sandbox", "student-aid"), ("up", "cedies", "curiosity")]
    for tag, consumer, purpose in cases:
        await demo.rest.get(
            f"/v1/population/persons/{nid}", headers=demo.headers(consumer, purpose, **{"x-request-id": f"rest-{tag}"})
        )
        with pytest.raises(grpc.aio.AioRpcError) if tag != "ok" else _nothing():
            await grpc_get_person(demo, nid, demo.metadata(consumer, purpose, **{"x-request-id": f"grpc-{tag}"}))
    rows = await demo.running.gateway.audit.query(AuditQuery(limit=10_000))
    by_request = {r.record.request_id: r.record for r in rows}
    for tag, consumer, _ in cases:
        for proto in ("rest", "grpc"):
            rec = by_request[f"{proto}-{tag}"]
            assert (rec.consumer, rec.protocol, rec.outcome == "ok") == (consumer, proto, tag == "ok")
    assert all(nid not in json.dumps(r.record.__repr__()) for r in rows)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


async def test_grpc_health_and_reflection(demo: DemoStack) -> None:
    health = health_pb2_grpc.HealthStub(demo.channel)
    resp = await health.Check(health_pb2.HealthCheckRequest(service="registry.population.v1.PopulationRegistry"))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(demo.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name async for r in responses for s in r.list_services_response.service}
    assert {"registry.population.v1.PopulationRegistry", "registry.tax.v1.TaxRegistry"} <= names


async def test_openapi_describes_the_contract_routes_truly(demo: DemoStack) -> None:
    spec = (await demo.rest.get("/openapi.json")).json()
    assert {
        "/v1/population/persons/{national_id}",
        "/v1/business/companies/{rcs_number}",
        "/v1/tax/income-certificates/{national_id}/{fiscal_year}",
    } <= set(spec["paths"])
    person = spec["components"]["schemas"]["registry.population.v1.Person"]
    assert person["properties"]["givenNames"]["x-data-category"] == "NAME"
    op = spec["paths"]["/v1/population/persons/{national_id}"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "registry.population.v1.Person"
    )
    assert {p["name"] for p in op["parameters"]} >= {"national_id", "x-purpose"}


async def test_health_and_readiness(demo: DemoStack) -> None:
    assert (await demo.rest.get("/healthz")).status_code == 200
    ready = await demo.rest.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


async def test_catalogue_tells_a_consumer_what_its_mandates_allow(demo: DemoStack) -> None:
    r = await demo.rest.get("/v1/catalogue", headers={"authorization": f"Bearer {demo.token()}"})
    assert r.status_code == 200, r.text
    services = {s["service"]: s for s in r.json()["services"]}
    person = services["registry.population.v1.PopulationRegistry/GetPerson"]
    (mandate,) = person["mandates"]
    assert mandate["allowedFields"] == sorted(
        ["given_names", "family_name", "birth_date", "address", "household_members"]
    )
    assert "mandates" not in services["registry.business.v1.BusinessRegistry/GetCompany"]
    from gateway._pb.passerelle.gateway.v1 import catalogue_pb2, catalogue_pb2_grpc

    stub = grpc_stub(catalogue_pb2_grpc.ServiceCatalogueStub, demo.channel)
    answer = await stub.ListServices(catalogue_pb2.ListServicesRequest(), metadata=demo.metadata("sandbox"))
    assert answer.consumer == "sandbox" and all(not s.mandates for s in answer.services)


async def test_token_cache_hit_ratio_is_exposed_as_a_metric(demo: DemoStack) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def token_cache(text: str, result: str) -> float:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("cache") == "token" and sample.labels.get("result") == result:
                    return sample.value
        return 0.0

    headers = demo.headers()
    nid = adult_with_household(demo)
    hits_before = token_cache((await demo.rest.get("/metrics")).text, "hit")
    for _ in range(3):
        assert (await demo.rest.get(f"/v1/population/persons/{nid}", headers=headers)).status_code == 200
    text = (await demo.rest.get("/metrics")).text
    assert token_cache(text, "hit") - hits_before >= 2  # the same token, verified once, then from the cache
    assert token_cache(text, "miss") >= 1
