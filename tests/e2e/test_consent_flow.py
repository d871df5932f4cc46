"""The citizen's consent lifecycle over real sockets: grant → lookup → revoke → refused; receipts; bad input."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from gateway._pb.passerelle.gateway.v1 import access_pb2, access_pb2_grpc, consent_pb2, consent_pb2_grpc
from gateway.application.receipts import ReceiptError, verify_receipt
from gateway.core.ports import AuditQuery
from gateway.demo.setup import demo_token
from tests.e2e.conftest import DemoStack
from tests.e2e.test_exchange import error_info
from tests.support import grpc_stub

pytestmark = pytest.mark.asyncio(loop_scope="module")

INCOME = "registry.tax.v1.TaxRegistry/GetIncomeCertificate"


def citizen(demo: DemoStack, nid: str) -> dict[str, str]:
    token = demo_token(demo.data_dir, issuer_id="demo-citizens", subject=nid, scope="citizen")
    return {"authorization": f"Bearer {token}"}


def admin(demo: DemoStack) -> dict[str, str]:
    return {
        "authorization": f"Bearer {demo_token(demo.data_dir, issuer_id='demo-staff', subject='admin', scope='admin')}"
    }


def taxpayers(demo: DemoStack, year: int = 2024) -> list[str]:
    return [p.national_id for p in demo.data.persons if demo.data.income(p.national_id, year) is not None]


async def grant(demo: DemoStack, nid: str, **body: object) -> dict:  # type: ignore[type-arg]
    r = await demo.rest.post(
        "/v1/me/consents", headers=citizen(demo, nid), json={"consumer": "cedies", "purpose": "student-aid", **body}
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def fetch(demo: DemoStack, nid: str, year: int = 2024, *, case_id: str = "") -> tuple[int, dict[str, Any]]:
    headers = demo.headers(**({"x-case-id": case_id} if case_id else {}))
    r = await demo.rest.get(f"/v1/tax/income-certificates/{nid}/{year}", headers=headers)
    return r.status_code, r.json()


async def test_citizen_grants_cedies_fetches_citizen_revokes_next_fetch_is_consent_revoked(demo: DemoStack) -> None:
    nid = taxpayers(demo)[5]
    assert (await fetch(demo, nid))[1]["reason"] == "CONSENT_REQUIRED"
    record = await grant(demo, nid)
    assert record["status"] == "CONSENT_STATUS_ACTIVE"
    assert record["purposeTitle"]["de"] == "Studienbeihilfe"
    assert set(record["categories"]) == {"INCOME", "TAX_STATUS"}
    status, body = await fetch(demo, nid)
    assert status == 200 and "taxableIncome" in body
    r = await demo.rest.delete(f"/v1/me/consents/{record['id']}", headers=citizen(demo, nid))
    assert (r.status_code, r.json()["status"]) == (200, "CONSENT_STATUS_REVOKED")
    status, body = await fetch(demo, nid)
    assert (status, body["reason"]) == (403, "CONSENT_REVOKED")


async def test_consent_record_has_the_shape_the_citizen_page_reads(demo: DemoStack) -> None:
    nid = taxpayers(demo)[6]
    expires = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0)
    record = await grant(
        demo, nid, categories=["INCOME", "TAX_STATUS"], expiresAt=expires.isoformat().replace("+00:00", "Z")
    )
    for key in (
        "id",
        "consumer",
        "consumerName",
        "purpose",
        "purposeTitle",
        "categories",
        "status",
        "grantedAt",
        "expiresAt",
        "receipt",
    ):
        assert key in record, key
    assert set(record["purposeTitle"]) == {"fr", "de", "en"}
    assert record["expiresAt"] == expires.isoformat().replace("+00:00", "Z")
    listed = (await demo.rest.get("/v1/me/consents", headers=citizen(demo, nid))).json()["consents"]
    assert [c["id"] for c in listed] == [record["id"]]


async def test_consent_is_stored_under_the_pseudonym_never_the_national_id(demo: DemoStack) -> None:
    nid = taxpayers(demo)[7]
    record = await grant(demo, nid)
    stored = await demo.running.gateway.consents.get(record["id"])
    assert stored is not None and stored.subject == demo.running.gateway.pseudonymise(nid)
    assert nid not in json.dumps([stored.subject, stored.extra])
    payload = json.loads(base64.urlsafe_b64decode(record["receipt"].split(".")[1] + "=="))
    assert payload["piiPrincipalId"] == stored.subject and nid not in record["receipt"]


async def test_receipt_verifies_with_the_published_key_and_fails_after_one_byte_changes(demo: DemoStack) -> None:
    record = await grant(demo, taxpayers(demo)[8])
    jwks = (await demo.rest.get("/.well-known/jwks.json")).json()
    claims = verify_receipt(record["receipt"], jwks)
    assert (claims["consentReceiptID"], claims["lawfulBasis"]["code"]) == (record["id"], "A6-1-a")
    header, payload, signature = record["receipt"].split(".")
    flipped = payload[:10] + ("A" if payload[10] != "A" else "B") + payload[11:]
    with pytest.raises(ReceiptError):
        verify_receipt(".".join([header, flipped, signature]), jwks)


async def test_single_use_consent_serves_one_exchange_then_is_spent(demo: DemoStack) -> None:
    nid = taxpayers(demo)[9]
    record = await grant(demo, nid, singleUse=True)
    assert (await fetch(demo, nid))[0] == 200
    status, body = await fetch(demo, nid)
    assert (status, body["reason"]) == (403, "CONSENT_SPENT")
    listed = (await demo.rest.get("/v1/me/consents", headers=citizen(demo, nid))).json()["consents"]
    assert listed[0]["id"] == record["id"] and listed[0]["status"] == "CONSENT_STATUS_SPENT"


async def test_grant_and_revoke_are_recorded_in_the_audit_log(demo: DemoStack) -> None:
    nid = taxpayers(demo)[10]
    record = await grant(demo, nid)
    await demo.rest.delete(f"/v1/me/consents/{record['id']}", headers=citizen(demo, nid))
    rows = await demo.running.gateway.audit.query(AuditQuery(subject=demo.running.gateway.pseudonymise(nid)))
    changes = [(r.record.kind, r.record.extra.get("action")) for r in rows if r.record.consent_id == record["id"]]
    assert changes == [("admin", "grant"), ("admin", "revoke")]


BAD_GRANTS = [
    ("other subject", {"subject": "19900101001XX"}, 403, "SUBJECT_MISMATCH"),
    ("unknown consumer", {"consumer": "nsa"}, 400, "INVALID_ARGUMENT"),
    ("unknown purpose", {"purpose": "curiosity"}, 400, "INVALID_ARGUMENT"),
    ("expiry in the past", {"expiresAt": "2020-01-01T00:00:00Z"}, 400, "INVALID_ARGUMENT"),
    ("malformed expiry", {"expiresAt": "tomorrow"}, 400, "INVALID_ARGUMENT"),
    ("unknown field", {"colour": "blue"}, 400, "INVALID_ARGUMENT"),
    ("category outside the mandate", {"categories": ["HEALTH"]}, 400, "INVALID_ARGUMENT"),
    ("no consent-based mandate", {"consumer": "sandbox"}, 403, "NO_MANDATE"),
]


@pytest.mark.parametrize(("case", "body", "status", "reason"), BAD_GRANTS, ids=[c[0] for c in BAD_GRANTS])
async def test_bad_grants_are_refused_with_a_reason_and_store_nothing(
    demo: DemoStack,
    case: str,
    body: dict[str, Any],
    status: int,
    reason: str,
) -> None:
    nid = taxpayers(demo)[11]
    r = await demo.rest.post(
        "/v1/me/consents", headers=citizen(demo, nid), json={"consumer": "cedies", "purpose": "student-aid", **body}
    )
    assert (r.status_code, r.json()["reason"]) == (status, reason), r.text
    assert r.json()["detail"]
    assert (await demo.rest.get("/v1/me/consents", headers=citizen(demo, nid))).json() == {"consents": []}


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"consumer": 7}', b"{" + b'"a":' * 10 + b"1"])
async def test_malformed_bodies_are_invalid_argument(demo: DemoStack, raw: bytes) -> None:
    nid = taxpayers(demo)[11]
    r = await demo.rest.post(
        "/v1/me/consents", content=raw, headers={**citizen(demo, nid), "content-type": "application/json"}
    )
    assert (r.status_code, r.json()["reason"]) == (400, "INVALID_ARGUMENT")


async def test_oversized_body_is_refused_before_parsing(demo: DemoStack) -> None:
    r = await demo.rest.post(
        "/v1/me/consents",
        content=b"{" + b" " * 200_000 + b"}",
        headers={**citizen(demo, taxpayers(demo)[11]), "content-type": "application/json"},
    )
    assert (r.status_code, r.json()["reason"]) == (413, "REQUEST_TOO_LARGE")


async def test_agency_token_cannot_grant_and_citizen_cannot_revoke_anothers_consent(demo: DemoStack) -> None:
    r = await demo.rest.post(
        "/v1/me/consents",
        headers={"authorization": f"Bearer {demo.token()}"},
        json={"consumer": "cedies", "purpose": "student-aid"},
    )
    assert (r.status_code, r.json()["reason"]) == (403, "WRONG_TOKEN_SCOPE")
    a, b = taxpayers(demo)[12:14]
    record = await grant(demo, a)
    r = await demo.rest.delete(f"/v1/me/consents/{record['id']}", headers=citizen(demo, b))
    assert (r.status_code, r.json()["reason"]) == (404, "NOT_FOUND")
    assert (await fetch(demo, a))[0] == 200


async def test_grpc_consent_service_grants_lists_and_revokes(demo: DemoStack) -> None:
    nid = taxpayers(demo)[14]
    md = tuple(citizen(demo, nid).items())
    stub = grpc_stub(consent_pb2_grpc.ConsentServiceStub, demo.channel)
    rec = await stub.GrantConsent(
        consent_pb2.GrantConsentRequest(consumer="cedies", purpose="student-aid"), metadata=md
    )
    listed = await stub.ListConsents(consent_pb2.ListConsentsRequest(), metadata=md)
    assert [c.id for c in listed.consents] == [rec.id]
    revoked = await stub.RevokeConsent(consent_pb2.RevokeConsentRequest(id=rec.id), metadata=md)
    assert revoked.status == consent_pb2.CONSENT_STATUS_REVOKED
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.GrantConsent(consent_pb2.GrantConsentRequest(consumer="cedies", purpose="nope"), metadata=md)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(exc.value).metadata["field"] == "purpose"


# --- explicit requests ------------------------------------------------------------------------------------


async def test_explicit_request_authorises_exactly_its_procedure(demo: DemoStack) -> None:
    nid = taxpayers(demo)[15]
    await grant(demo, nid, procedureId="case-2026-0042")
    assert (await fetch(demo, nid, case_id="case-2026-0042"))[0] == 200
    status, body = await fetch(demo, nid, case_id="case-2026-9999")
    assert (status, body["reason"]) == (403, "CONSENT_MISMATCH")
    assert (await fetch(demo, nid))[1]["reason"] == "CONSENT_MISMATCH"


# --- access checks ---------------------------------------------------------------------------------------


async def test_access_check_explains_without_calling_the_registry(demo: DemoStack) -> None:
    nid = taxpayers(demo)[16]
    body = {"consumer": "cedies", "service": INCOME, "purpose": "student-aid", "subject": nid}
    r = await demo.rest.post("/v1/access-checks", json=body, headers={"authorization": f"Bearer {demo.token()}"})
    answer = r.json()
    assert (r.status_code, answer["allowed"], answer["reason"]) == (200, False, "CONSENT_REQUIRED")
    assert "consent" in answer["explanation"].lower() and nid not in r.text
    rows = await demo.running.gateway.audit.query(AuditQuery(subject=demo.running.gateway.pseudonymise(nid)))
    assert [(r.record.kind, r.record.extra.get("action")) for r in rows] == [("admin", "access-check")]
    await grant(demo, nid)
    mine = await demo.rest.post("/v1/access-checks", json=body, headers=citizen(demo, nid))
    agency = await demo.rest.post("/v1/access-checks", json=body, headers={"authorization": f"Bearer {demo.token()}"})
    assert mine.json()["allowed"] is True
    assert mine.json()["explanation"] == agency.json()["explanation"]
    assert set(mine.json()["fields"]) == {"fiscal_year", "taxable_income", "tax_class", "issued_on"}


async def test_access_check_names_the_refusing_rule(demo: DemoStack) -> None:
    headers = {"authorization": f"Bearer {demo.token('sandbox')}"}
    body = {"service": "registry.population.v1.PopulationRegistry/GetPerson", "purpose": "student-aid"}
    answer = (await demo.rest.post("/v1/access-checks", json=body, headers=headers)).json()
    assert (answer["allowed"], answer["reason"]) == (False, "NO_MANDATE")
    r = await demo.rest.post("/v1/access-checks", json={**body, "consumer": "cedies"}, headers=headers)
    assert (r.status_code, r.json()["reason"]) == (403, "WRONG_TOKEN_SCOPE")


async def test_citizen_may_check_only_their_own_subject(demo: DemoStack) -> None:
    a, b = taxpayers(demo)[17:19]
    body = {"consumer": "cedies", "service": INCOME, "purpose": "student-aid", "subject": b}
    r = await demo.rest.post("/v1/access-checks", json=body, headers=citizen(demo, a))
    assert (r.status_code, r.json()["reason"]) == (403, "SUBJECT_MISMATCH")


async def test_grpc_access_check(demo: DemoStack) -> None:
    stub = grpc_stub(access_pb2_grpc.AccessCheckStub, demo.channel)
    answer = await stub.CheckAccess(
        access_pb2.CheckAccessRequest(
            service="registry.population.v1.PopulationRegistry/GetPerson", purpose="student-aid"
        ),
        metadata=(("authorization", f"Bearer {demo.token()}"),),
    )
    assert answer.allowed and answer.mandate_id == "cedies-person-student-aid" and answer.legal_basis == "A6-1-e"


# --- mandates at run time -------------------------------------------------------------------------------


async def test_admin_edits_a_mandate_and_the_next_lookup_follows_it(demo: DemoStack) -> None:
    nid = taxpayers(demo)[19]
    await grant(demo, nid)
    url = "/v1/admin/mandates/cedies-income-student-aid"
    original = (await demo.rest.get(url, headers=admin(demo))).json()
    assert original["origin"] == "config"
    narrowed = {
        **original,
        "categories": ["INCOME"],
        "limits": [{"field": "fiscal_year", "op": "eq", "values": ["2024"]}],
    }
    narrowed.pop("origin")
    r = await demo.rest.put(url, json=narrowed, headers=admin(demo))
    assert (r.status_code, r.json()["origin"]) == (200, "admin"), r.text
    try:
        status, body = await fetch(demo, nid)
        assert (status, set(body)) == (200, {"taxableIncome"})
        status, body = await fetch(demo, nid, year=2023)
        assert (status, body["reason"]) == (403, "MANDATE_LIMIT")
        cat = (await demo.rest.get("/v1/catalogue", headers={"authorization": f"Bearer {demo.token()}"})).json()
        (income,) = [s for s in cat["services"] if s["service"] == INCOME]
        assert income["mandates"][0]["limits"] == ["fiscal_year must equal 2024"]
        rows = await demo.running.gateway.audit.query(AuditQuery(limit=10_000))
        edits = [r.record for r in rows if r.record.extra.get("mandate_id") == "cedies-income-student-aid"]
        assert edits and edits[-1].kind == "admin" and edits[-1].extra["actor"] == "staff:admin"
    finally:
        original.pop("origin")
        await demo.rest.put(url, json=original, headers=admin(demo))
    assert (await fetch(demo, nid, year=2023))[0] in (200, 404)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"consumer": "nobody"}, "consumer"),
        ({"fields": ["shoe_size"]}, "fields"),
        ({"legal_basis": "A99"}, "legal_basis"),
        ({"limits": [{"field": "colour", "op": "eq", "values": ["x"]}]}, "limits"),
        ({"limits": [{"field": "fiscal_year", "op": "between", "values": ["x"]}]}, "limits"),
        ({"valid_from": "yesterday"}, "valid_from"),
    ],
)
async def test_invalid_mandates_are_refused_and_change_nothing(demo: DemoStack, change: dict, field: str) -> None:  # type: ignore[type-arg]
    body = {
        "consumer": "cedies",
        "service": INCOME,
        "purposes": ["student-aid"],
        "legal_basis": "A6-1-a",
        "categories": ["INCOME"],
        **change,
    }
    r = await demo.rest.put("/v1/admin/mandates/new-one", json=body, headers=admin(demo))
    assert (r.status_code, r.json()["reason"], r.json()["field"]) == (400, "INVALID_ARGUMENT", field), r.text
    assert (await demo.rest.get("/v1/admin/mandates/new-one", headers=admin(demo))).status_code == 404


async def test_mandate_admin_needs_the_admin_scope(demo: DemoStack) -> None:
    ops = demo_token(demo.data_dir, issuer_id="demo-staff", subject="ops", scope="ops")
    r = await demo.rest.get("/v1/admin/mandates", headers={"authorization": f"Bearer {ops}"})
    assert (r.status_code, r.json()["reason"]) == (403, "WRONG_TOKEN_SCOPE")
    r = await demo.rest.get("/v1/admin/mandates", headers={"authorization": f"Bearer {demo.token()}"})
    assert r.status_code == 403


async def test_deleted_mandate_refuses_and_catalogue_follows(demo: DemoStack) -> None:
    body = {
        "consumer": "sandbox",
        "service": "registry.population.v1.PopulationRegistry/GetPerson",
        "purposes": ["student-aid"],
        "legal_basis": "A6-1-e",
        "categories": ["NAME"],
    }
    assert (await demo.rest.put("/v1/admin/mandates/sandbox-names", json=body, headers=admin(demo))).status_code == 200
    nid = demo.data.persons[0].national_id
    r = await demo.rest.get(f"/v1/population/persons/{nid}", headers=demo.headers("sandbox"))
    assert r.status_code == 200 and set(r.json()) <= {"givenNames", "familyName"}
    cat = (await demo.rest.get("/v1/catalogue", headers={"authorization": f"Bearer {demo.token('sandbox')}"})).json()
    assert any(s.get("mandates") for s in cat["services"])
    assert (await demo.rest.delete("/v1/admin/mandates/sandbox-names", headers=admin(demo))).status_code == 200
    r = await demo.rest.get(f"/v1/population/persons/{nid}", headers=demo.headers("sandbox"))
    assert (r.status_code, r.json()["reason"]) == (403, "NO_MANDATE")


async def test_purposes_catalogue_is_public_in_three_languages(demo: DemoStack) -> None:
    purposes = (await demo.rest.get("/v1/purposes")).json()["purposes"]
    assert {p["code"] for p in purposes} >= {"student-aid", "procurement-check"}
    assert all(set(p["title"]) >= {"fr", "de", "en"} for p in purposes)
