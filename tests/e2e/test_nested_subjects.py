"""Every person whose data leaves sees it: household members and company managers, on both doors."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gateway._pb.registry.business.v1 import business_pb2, business_pb2_grpc
from gateway._pb.registry.population.v1 import population_pb2, population_pb2_grpc
from gateway.core.pipeline import third_party_request_id
from gateway.core.ports import AuditQuery
from gateway.core.types import AuditRecord
from gateway.demo.setup import demo_token
from tests.e2e.conftest import DemoStack
from tests.support import grpc_stub

pytestmark = pytest.mark.asyncio(loop_scope="module")

PERSON = "registry.population.v1.PopulationRegistry/GetPerson"
NARROW = "nested-names-only"


def citizen(demo: DemoStack, nid: str) -> dict[str, str]:
    token = demo_token(demo.data_dir, issuer_id="demo-citizens", subject=nid, scope="citizen")
    return {"authorization": f"Bearer {token}"}


def admin(demo: DemoStack) -> dict[str, str]:
    token = demo_token(demo.data_dir, issuer_id="demo-staff", subject="admin", scope="admin")
    return {"authorization": f"Bearer {token}"}


def households(demo: DemoStack, n: int) -> list[tuple[str, list[str]]]:
    """``n`` people, each with the other members of a household of three or more (distinct households)."""
    found = [(h.members[0], list(h.members[1:])) for h in demo.data.households if len(h.members) >= 3]
    assert len(found) >= n
    return found[:n]


async def history(demo: DemoStack, nid: str) -> list[dict]:  # type: ignore[type-arg]
    r = await demo.rest.get("/v1/me/accesses", headers=citizen(demo, nid))
    assert r.status_code == 200, r.text
    return r.json().get("accesses", [])  # type: ignore[no-any-return]


async def records_of(demo: DemoStack, request_id: str) -> list[AuditRecord]:
    """The exchange's record, then its third parties' (their request ids derived under the pseudonym key)."""
    rows = await demo.running.gateway.audit.query(AuditQuery(limit=10_000))
    p = demo.running.gateway.pseudonymise
    return [r.record for r in rows if r.record.request_id == request_id] + [
        r.record for r in rows
        if r.record.request_id == third_party_request_id(p, request_id, r.record.subject) and not r.record.trace_id
    ]  # fmt: skip


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def names_only(demo: DemoStack) -> AsyncIterator[str]:
    """A run-time mandate: the sandbox agency may read names, and of the household only the given names."""
    body = {"consumer": "sandbox", "service": PERSON, "purposes": ["student-aid"], "legalBasis": "A6-1-e",
            "fields": ["given_names", "family_name", "household_members.given_names"]}  # fmt: skip
    r = await demo.rest.put(f"/v1/admin/mandates/{NARROW}", json=body, headers=admin(demo))
    assert r.status_code == 200, r.text
    yield "sandbox"
    await demo.rest.delete(f"/v1/admin/mandates/{NARROW}", headers=admin(demo))


async def test_a_household_lookup_shows_up_in_each_members_history_with_their_fields(demo: DemoStack) -> None:
    [(nid, members)] = households(demo, 1)
    r = await demo.rest.get(f"/v1/population/persons/{nid}", headers=demo.headers(**{"x-request-id": "hh-1"}))
    assert r.status_code == 200, r.text
    main = [e for e in await history(demo, nid) if e.get("subjectRole") != "third_party"][-1]
    for member in members:
        [entry] = [e for e in await history(demo, member) if e.get("subjectRole") == "third_party"]
        assert (entry["agency"]["id"], entry["purpose"]["code"], entry["legalBasis"], entry["outcome"]) == (
            "cedies", "student-aid", "A6-1-e", "ok"
        )  # fmt: skip
        assert [f["name"] for f in entry["dataFields"]] == [
            "national_id", "given_names", "family_name", "relationship", "birth_date"
        ]  # fmt: skip
        assert ("given_names", "NAME") in [(f["name"], f["category"]) for f in entry["dataFields"]]
        assert entry["id"] != main["id"] and entry.get("consentId") is None
    for record in await records_of(demo, "hh-1"):
        if record.subject != demo.running.gateway.pseudonymise(nid):   # a member's record names no one else
            assert demo.running.gateway.pseudonymise(nid) not in repr(record) and nid not in repr(record)


async def test_the_export_carries_the_role(demo: DemoStack) -> None:
    [_, (nid, members)] = households(demo, 2)
    await demo.rest.get(f"/v1/population/persons/{nid}", headers=demo.headers())
    text = (await demo.rest.get("/v1/me/accesses/export?format=csv", headers=citizen(demo, members[0]))).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["subject_role"] for row in rows] == ["third_party"]
    exported = (await demo.rest.get("/v1/me/accesses/export", headers=citizen(demo, members[0]))).json()
    assert [e["subjectRole"] for e in exported["accesses"]] == ["third_party"]


async def test_a_names_only_mandate_sends_no_member_id_on_either_door_and_the_records_agree(
    demo: DemoStack, names_only: str
) -> None:
    [*_, (nid, members)] = households(demo, 3)
    headers = demo.headers(names_only, **{"x-request-id": "narrow-rest"})
    body = (await demo.rest.get(f"/v1/population/persons/{nid}", headers=headers)).json()
    assert set(body) == {"givenNames", "familyName", "householdMembers"}
    assert all(set(m) == {"givenNames"} for m in body["householdMembers"]) and len(body["householdMembers"]) == 2

    stub = grpc_stub(population_pb2_grpc.PopulationRegistryStub, demo.channel)
    metadata = demo.metadata(names_only, **{"x-request-id": "narrow-grpc"})
    person = await stub.GetPerson(population_pb2.GetPersonRequest(national_id=nid), metadata=metadata, timeout=5)
    assert {f.name for f, _ in person.ListFields()} == {"given_names", "family_name", "household_members"}
    assert all([f.name for f, _ in m.ListFields()] == ["given_names"] for m in person.household_members)

    for request_id in ("narrow-rest", "narrow-grpc"):
        main, *others = await records_of(demo, request_id)
        assert main.fields == ("given_names", "family_name", "household_members.given_names")
        assert sorted(r.subject for r in others) == sorted(demo.running.gateway.pseudonymise(m) for m in members)
        assert {r.fields for r in others} == {("given_names",)}
    for member in members:
        entries = [e for e in await history(demo, member) if e["agency"]["id"] == names_only]
        assert [(e["subjectRole"], [(f["name"], f["category"]) for f in e["dataFields"]]) for e in entries] == [
            ("third_party", [("given_names", "NAME")])
        ] * 2


async def test_a_company_lookup_shows_up_in_each_managers_history(demo: DemoStack) -> None:
    company = demo.data.companies[0]
    stub = grpc_stub(business_pb2_grpc.BusinessRegistryStub, demo.channel)
    answer = await stub.GetCompany(business_pb2.GetCompanyRequest(rcs_number=company.rcs_number),
                                   metadata=demo.metadata("procurement", "procurement-check"), timeout=5)  # fmt: skip
    assert answer.managers and not any(m.national_id for m in answer.managers)   # the mandate leaves them out
    for manager in company.managers:
        assert demo.data.person(manager.national_id) is not None   # a person of the population register
        [entry] = [e for e in await history(demo, manager.national_id) if e["agency"]["id"] == "procurement"]
        assert entry["subjectRole"] == "third_party"
        assert [f["name"] for f in entry["dataFields"]] == ["given_names", "family_name", "role", "appointed_on"]
