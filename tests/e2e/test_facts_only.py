"""Citizens see only facts, and probes are visible: hostile caller values on both doors (issue 10, points 4-5)."""

from __future__ import annotations

import csv
import io

import grpc
import pytest

from gateway._pb.passerelle.gateway.v1 import access_pb2, access_pb2_grpc
from gateway._pb.registry.population.v1 import population_pb2, population_pb2_grpc
from gateway.core.export_safety import FORMULA_STARTS
from gateway.core.ports import AuditQuery
from gateway.demo.setup import demo_token
from tests.e2e.conftest import DemoStack
from tests.e2e.test_exchange import error_info
from tests.support import grpc_stub

pytestmark = pytest.mark.asyncio(loop_scope="module")

URGENT = "URGENT: call +352 621 000 000 to keep your benefits"
HYPERLINK = '=HYPERLINK("http://e.vil/?x","Click to keep your benefits")'
INCOME = "registry.tax.v1.TaxRegistry/GetIncomeCertificate"
PERSON = "registry.population.v1.PopulationRegistry/GetPerson"
DOORS = ["rest", "grpc"]


def _one_per_household(demo: DemoStack) -> list[str]:
    """One person per household, so that no lookup here discloses (as a household member) another one's data."""
    first: dict[str, str] = {}
    for p in demo.data.persons:
        first.setdefault(p.household_id, p.national_id)
    return list(first.values())


def person(demo: DemoStack, n: int) -> str:
    return _one_per_household(demo)[n]


def citizen(demo: DemoStack, nid: str) -> dict[str, str]:
    token = demo_token(demo.data_dir, issuer_id="demo-citizens", subject=nid, scope="citizen")
    return {"authorization": f"Bearer {token}"}


async def lookup(demo: DemoStack, door: str, nid: str, consumer: str, purpose: str, **headers: str) -> tuple[int, str]:
    """(HTTP-like status, reason) of a person lookup through ``door``."""
    if door == "rest":
        r = await demo.rest.get(f"/v1/population/persons/{nid}", headers=demo.headers(consumer, purpose, **headers))
        return r.status_code, r.json().get("reason", "")
    stub = grpc_stub(population_pb2_grpc.PopulationRegistryStub, demo.channel)
    try:
        await stub.GetPerson(population_pb2.GetPersonRequest(national_id=nid),
                             metadata=demo.metadata(consumer, purpose, **headers))  # fmt: skip
    except grpc.aio.AioRpcError as err:
        return {grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.INVALID_ARGUMENT: 400}.get(
            err.code(), 500), error_info(err).reason
    return 200, ""


async def log_text(demo: DemoStack) -> str:
    return "\n".join(repr(s.record) for s in await demo.running.gateway.audit.query(AuditQuery(limit=100_000)))


async def history(demo: DemoStack, nid: str) -> list[dict]:  # type: ignore[type-arg]
    r = await demo.rest.get("/v1/me/accesses", params={"pageSize": 200}, headers=citizen(demo, nid))
    assert r.status_code == 200, r.text
    return r.json().get("accesses", [])  # type: ignore[no-any-return]


async def export_csv(demo: DemoStack, nid: str) -> list[list[str]]:
    r = await demo.rest.get("/v1/me/accesses/export", params={"format": "csv"}, headers=citizen(demo, nid))
    assert r.status_code == 200, r.text
    return list(csv.reader(io.StringIO(r.text)))


@pytest.mark.parametrize("door", DOORS)
async def test_agency_text_as_purpose_is_recorded_and_shown_as_unknown(demo: DemoStack, door: str) -> None:
    nid = person(demo, 0 + DOORS.index(door))
    assert await lookup(demo, door, nid, "sandbox", URGENT) == (403, "UNKNOWN_PURPOSE")
    (entry,) = await history(demo, nid)
    assert (entry["purpose"]["code"], entry["reason"]) == ("unknown", "UNKNOWN_PURPOSE")
    rows = await export_csv(demo, nid)
    assert rows[1][rows[0].index("purpose")] == "unknown"
    assert URGENT not in await log_text(demo)


@pytest.mark.parametrize("door", DOORS)
async def test_a_national_id_as_purpose_never_enters_the_log(demo: DemoStack, door: str) -> None:
    nid, other = person(demo, 2 + DOORS.index(door)), person(demo, 4 + DOORS.index(door))
    assert await lookup(demo, door, nid, "cedies", other) == (403, "UNKNOWN_PURPOSE")
    assert other not in await log_text(demo)


@pytest.mark.parametrize("door", DOORS)
async def test_twelve_kilobytes_of_purpose_are_refused_and_not_recorded(demo: DemoStack, door: str) -> None:
    nid, text = person(demo, 6 + DOORS.index(door)), "Please call us " + "x" * 12_000
    status, reason = await lookup(demo, door, nid, "sandbox", text)
    assert status >= 400 and reason in {"UNKNOWN_PURPOSE", "HEADERS_TOO_LARGE"}
    assert "x" * 100 not in await log_text(demo)


@pytest.mark.parametrize("door", DOORS)
async def test_a_formula_as_ai_system_is_refused_and_not_recorded(demo: DemoStack, door: str) -> None:
    nid = person(demo, 8 + DOORS.index(door))
    assert await lookup(demo, door, nid, "cedies", "student-aid", **{"x-ai-system": "-1-1"}) == (
        400, "CALLER_FIELD_INVALID")
    (entry,) = await history(demo, nid)
    assert (entry["reason"], entry.get("aiSystem", "")) == ("CALLER_FIELD_INVALID", "")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        pytest.param("x-case-id", "NID"),
        pytest.param("x-officer-id", HYPERLINK),
        pytest.param("x-case-id", "c" * 12_000),
        ("x-case-id", "-2-3"),
        ("x-officer-id", "@officer"),
    ],
)
@pytest.mark.parametrize("door", DOORS)
async def test_bad_caller_identifiers_are_refused(demo: DemoStack, door: str, header: str, value: str) -> None:
    nid = person(demo, 10)
    value = person(demo, 11) if value == "NID" else value
    assert await lookup(demo, door, nid, "cedies", "student-aid", **{header: value}) == (400, "CALLER_FIELD_INVALID")


@pytest.mark.parametrize("door", DOORS)
async def test_hostile_identifiers_never_reach_the_log_or_start_a_formula_in_the_export(
    demo: DemoStack, door: str
) -> None:
    nid, other = person(demo, 12 + DOORS.index(door)), person(demo, 14)
    for header, value in [("x-officer-id", HYPERLINK), ("x-case-id", other), ("x-ai-system", "+1+1"),
                          ("x-consent-id", "@SUM(A1)"), ("x-case-id", "c" * 12_000)]:  # fmt: skip
        await lookup(demo, door, nid, "cedies", "student-aid", **{header: value})
    text = await log_text(demo)
    assert "HYPERLINK" not in text and other not in text and "c" * 100 not in text and "SUM(" not in text
    for row in (await export_csv(demo, nid))[1:]:
        assert not any(cell.startswith(FORMULA_STARTS) for cell in row), row


@pytest.mark.parametrize("door", DOORS)
async def test_an_unchecked_consent_id_is_not_shown_as_the_consent_relied_on(demo: DemoStack, door: str) -> None:
    nid = person(demo, 16 + DOORS.index(door))
    assert await lookup(demo, door, nid, "cedies", "student-aid", **{"x-consent-id": "cns_madeup"}) == (200, "")
    (entry,) = await history(demo, nid)
    assert (entry["outcome"], entry.get("consentId", "")) == ("ok", "")


# --- probes are visible ------------------------------------------------------------------------------------


def taxpayer(demo: DemoStack, n: int) -> str:
    """A person with a 2024 income certificate, never one of the persons above (``person`` takes the first 60)."""
    people = _one_per_household(demo)[60:]
    return [nid for nid in people if demo.data.income(nid, 2024) is not None][n]


async def check(demo: DemoStack, door: str, nid: str, purpose: str = "student-aid") -> dict[str, object]:
    if door == "rest":
        body = {"service": INCOME, "purpose": purpose, "subject": nid}
        r = await demo.rest.post("/v1/access-checks", json=body, headers={"authorization": f"Bearer {demo.token()}"})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]
    stub = grpc_stub(access_pb2_grpc.AccessCheckStub, demo.channel)
    answer = await stub.CheckAccess(access_pb2.CheckAccessRequest(service=INCOME, purpose=purpose, subject=nid),
                                    metadata=(("authorization", f"Bearer {demo.token()}"),))  # fmt: skip
    return {"allowed": answer.allowed, "reason": answer.reason, "text": str(answer)}


async def test_the_access_check_answer_has_no_consent_id_field() -> None:
    assert "consent_id" not in access_pb2.CheckAccessResponse.DESCRIPTOR.fields_by_name


@pytest.mark.parametrize("door", DOORS)
async def test_an_access_check_is_in_the_subjects_history_without_a_consent_id(demo: DemoStack, door: str) -> None:
    nid = taxpayer(demo, 0 + DOORS.index(door))
    r = await demo.rest.post("/v1/me/consents", headers=citizen(demo, nid),
                             json={"consumer": "cedies", "purpose": "student-aid"})  # fmt: skip
    consent_id = r.json()["id"]
    answer = await check(demo, door, nid)
    assert answer["allowed"] is True and consent_id not in str(answer)
    (entry,) = [e for e in await history(demo, nid) if e["outcome"] == "checked"]
    assert (entry["agency"]["id"], entry["service"], entry["purpose"]["code"]) == ("cedies", INCOME, "student-aid")
    assert entry.get("consentId", "") == "" and not entry.get("dataFields")
    rows = await export_csv(demo, nid)
    assert consent_id not in str(rows[1:])


@pytest.mark.parametrize("door", DOORS)
async def test_an_access_check_with_agency_text_as_purpose_is_shown_as_unknown(demo: DemoStack, door: str) -> None:
    nid = taxpayer(demo, 2 + DOORS.index(door))
    answer = await check(demo, door, nid, purpose=URGENT)
    assert (answer["allowed"], answer["reason"]) == (False, "UNKNOWN_PURPOSE")
    (entry,) = await history(demo, nid)
    assert (entry["outcome"], entry["purpose"]["code"], entry["reason"]) == ("checked", "unknown", "UNKNOWN_PURPOSE")
    assert URGENT not in await log_text(demo)


@pytest.mark.parametrize("door", DOORS)
async def test_only_a_registered_ai_system_is_recorded_and_shown(demo: DemoStack, door: str) -> None:
    """x-ai-system must name one of the agency's registered AI systems: free text never reaches citizens."""
    nid = person(demo, 30 + DOORS.index(door))
    free_text = {"x-ai-system": "CALL.00352.621.123.456"}
    assert await lookup(demo, door, nid, "cedies", "student-aid", **free_text) == (400, "CALLER_FIELD_INVALID")
    registered = {"x-ai-system": "eu-ai-db.cedies-eligibility-1"}
    assert await lookup(demo, door, nid, "cedies", "student-aid", **registered) == (200, "")
    shown = [e.get("aiSystem", "") for e in await history(demo, nid)]
    assert sorted(shown) == ["", "eu-ai-db.cedies-eligibility-1"]
