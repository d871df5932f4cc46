"""The citizen's "who accessed my data" API over real sockets: content, embargo, proofs, isolation."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization

from adapters.stores.audit_signing import verify_checkpoint
from gateway.core.audit_proof import InclusionProof, check_proof
from gateway.core.clock import now_us
from gateway.core.merkle import Checkpoint
from gateway.demo.setup import demo_token
from tests.e2e.conftest import DemoStack

pytestmark = pytest.mark.asyncio(loop_scope="module")
DAY_US = 86_400_000_000


def citizen(demo: DemoStack, nid: str) -> dict[str, str]:
    token = demo_token(demo.data_dir, issuer_id="demo-citizens", subject=nid, scope="citizen")
    return {"authorization": f"Bearer {token}"}


async def looked_up(demo: DemoStack, nid: str, times: int = 1, consumer: str = "cedies") -> None:
    for _ in range(times):
        await demo.rest.get(f"/v1/population/persons/{nid}", headers=demo.headers(consumer))


async def seqs_of(demo: DemoStack, nid: str) -> set[int]:
    """The seq numbers of every exchange record about ``nid`` (read from the store, not the API)."""
    subject = demo.running.gateway.pseudonymise(nid)
    from gateway.core.ports import AuditQuery

    return {s.seq for s in await demo.running.gateway.audit.query(AuditQuery(subject=subject, limit=10_000))}


@pytest.fixture(scope="module")
def people(demo: DemoStack) -> tuple[str, str]:
    a, b = demo.data.persons[10].national_id, demo.data.persons[11].national_id
    return a, b


async def test_an_access_names_agency_purpose_fields_and_legal_basis(demo: DemoStack, people: tuple[str, str]) -> None:
    a, _ = people
    await looked_up(demo, a)
    r = await demo.rest.get("/v1/me/accesses", headers=citizen(demo, a))
    assert r.status_code == 200, r.text
    entry = r.json()["accesses"][0]   # newest first
    name = "CEDIES - aide financière de l'État pour études supérieures"
    assert entry["agency"] == {"id": "cedies", "name": name, "names": {"fr": name, "de": name, "en": name}}
    assert entry["legalReferenceTitle"]["de"].startswith("Geändertes Gesetz vom 24. Juli 2014, Art. 4")
    assert entry["service"] == "registry.population.v1.PopulationRegistry/GetPerson"
    family = next(f for f in entry["dataFields"] if f["name"] == "family_name")
    assert family["category"] == "NAME"
    assert family["displayName"] == {"fr": "Nom de famille", "de": "Familienname", "en": "Family name"}
    assert entry["purpose"]["code"] == "student-aid" and entry["purpose"]["title"]["de"] == "Studienbeihilfe"
    assert (entry["legalBasis"], entry["outcome"]) == ("A6-1-e", "ok")
    assert entry["legalReference"].startswith("Loi modifiée du 24 juillet 2014")


async def test_refused_attempts_are_shown_with_their_reason(demo: DemoStack, people: tuple[str, str]) -> None:
    a, _ = people
    await looked_up(demo, a, consumer="sandbox")
    r = await demo.rest.get("/v1/me/accesses", headers=citizen(demo, a), params={"consumer": "sandbox"})
    [entry] = r.json()["accesses"]
    assert (entry["outcome"], entry["reason"], entry.get("dataFields")) == ("refused", "NO_MANDATE", None)


async def test_embargoed_entries_are_counted_then_shown_after_their_date(demo: DemoStack) -> None:
    nid = demo.data.persons[12].national_id
    await looked_up(demo, nid)
    audit = demo.running.gateway.audit
    [first] = [await audit.get(s) for s in await seqs_of(demo, nid)]
    assert first is not None
    await audit.append(replace(first.record, hidden_until_us=now_us() + 30 * DAY_US, hidden_reason="investigation"))
    await audit.append(replace(first.record, hidden_until_us=now_us() - 1, request_id="lifted"))
    body = (await demo.rest.get("/v1/me/accesses", headers=citizen(demo, nid))).json()
    assert (body["hiddenCount"], body["totalCount"], len(body["accesses"])) == (1, 2, 2)
    assert "investigation" not in str(body)


async def test_filters_by_period_consumer_and_purpose(demo: DemoStack, people: tuple[str, str]) -> None:
    a, _ = people
    h = citizen(demo, a)
    assert (await demo.rest.get("/v1/me/accesses", headers=h, params={"until": "2000-01-01"})).json() == {}
    by_purpose = (await demo.rest.get("/v1/me/accesses", headers=h, params={"purpose": "student-aid"})).json()
    assert {e["purpose"]["code"] for e in by_purpose["accesses"]} == {"student-aid"}
    bad = await demo.rest.get("/v1/me/accesses", headers=h, params={"since": "last week"})
    assert (bad.status_code, bad.json()["reason"]) == (400, "INVALID_ARGUMENT")


async def test_pages_cover_all_accesses_once(demo: DemoStack) -> None:
    nid = demo.data.persons[13].national_id
    await looked_up(demo, nid, times=5)
    h, seen, token = citizen(demo, nid), [], ""
    while True:
        body = (await demo.rest.get("/v1/me/accesses", headers=h, params={"pageSize": 2, "pageToken": token})).json()
        seen += [int(e["id"]) for e in body["accesses"]]
        token = body.get("nextPageToken", "")
        if not token:
            break
    assert seen == sorted(await seqs_of(demo, nid), reverse=True) and len(seen) == 5   # newest first


async def test_the_proof_of_my_access_checks_against_the_signed_checkpoint(
    demo: DemoStack, people: tuple[str, str]
) -> None:
    a, _ = people
    seq = min(await seqs_of(demo, a))
    h = citizen(demo, a)
    gw = demo.running.gateway
    await gw.checkpoint_signer.checkpoint()   # the running gateway's own signer
    public = (await demo.rest.get("/v1/audit/checkpoints")).json()   # public: no token
    r = await demo.rest.get(f"/v1/me/accesses/{seq}/proof", headers=h)
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["checkpoint"] == public["latest"]
    import base64

    c = p["checkpoint"]
    cp = Checkpoint(int(c["treeSize"]), base64.b64decode(c["rootHash"]), int(c["timeUs"]),
                    base64.b64decode(c["signature"]), c["keyId"], c["origin"])  # fmt: skip
    key = serialization.load_pem_public_key(public["publicKeyPem"].encode())
    proof = InclusionProof(int(p["seq"]), p["recordHash"], p["prevHash"], p["canonical"],
                           tuple(bytes.fromhex(x) for x in p.get("auditPath", [])), cp)  # fmt: skip
    assert check_proof(proof, lambda payload, sig: verify_checkpoint(cp, key)) == []  # type: ignore[arg-type]


# --- isolation: A's token never returns B's records ---------------------------------------------------


async def test_a_citizen_never_sees_another_citizens_records(demo: DemoStack, people: tuple[str, str]) -> None:
    a, b = people
    await looked_up(demo, b, times=2)
    mine, theirs = await seqs_of(demo, a), await seqs_of(demo, b)
    assert mine and theirs and not mine & theirs
    h = citizen(demo, a)
    queries: list[dict[str, str | int]] = [
        {}, {"consumer": "cedies"}, {"purpose": "student-aid"}, {"since": "2000-01-01"},
        {"pageSize": 1}, {"pageToken": "YWZ0ZXI6MA"}, {"pageSize": 200, "until": "2999-01-01"}]  # fmt: skip
    for params in queries:
        body = (await demo.rest.get("/v1/me/accesses", headers=h, params=params)).json()
        assert {int(e["id"]) for e in body.get("accesses", [])} <= mine, params
    for seq in theirs:
        r = await demo.rest.get(f"/v1/me/accesses/{seq}/proof", headers=h)
        assert (r.status_code, r.json()["reason"]) == (404, "NOT_FOUND")
    exported = (await demo.rest.get("/v1/me/accesses/export", headers=h, params={"format": "json"})).json()
    assert {int(e["id"]) for e in exported["accesses"]} == mine
    rows = list(csv.DictReader(io.StringIO((await demo.rest.get("/v1/me/accesses/export?format=csv", headers=h)).text)))
    assert {int(row["id"]) for row in rows} == mine


async def test_no_parameter_can_name_a_subject(demo: DemoStack, people: tuple[str, str]) -> None:
    a, b = people
    pseudonym = demo.running.gateway.pseudonymise(b)
    for name in ("subject", "nationalId", "sub"):
        r = await demo.rest.get("/v1/me/accesses", headers=citizen(demo, a), params={name: pseudonym})
        assert (r.status_code, r.json()["reason"]) == (400, "INVALID_ARGUMENT")


async def test_only_a_citizen_token_opens_the_citizen_api(demo: DemoStack) -> None:
    for path in ("/v1/me/accesses", "/v1/me/accesses/export", "/v1/me/accesses/1/proof"):
        assert (await demo.rest.get(path)).status_code == 401
        r = await demo.rest.get(path, headers=demo.headers("cedies"))
        assert (r.status_code, r.json()["reason"]) == (403, "WRONG_TOKEN_SCOPE")


async def test_demo_sign_in_is_off_unless_the_gateway_runs_in_demo_mode(demo: DemoStack) -> None:
    assert (await demo.rest.post("/v1/demo/citizen-token", json={"nationalId": "1"})).status_code == 404
    assert (await demo.rest.get("/v1/demo")).status_code == 404
    page = await demo.rest.get("/me/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
