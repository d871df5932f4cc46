"""Administrative changes are evidence: recorded in full before they take effect, or not made (issue 10, point 6)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest

from gateway._pb.passerelle.gateway.v1 import revocations_pb2 as pb
from gateway._pb.passerelle.gateway.v1 import revocations_pb2_grpc
from gateway.core.errors import GatewayError, Reason
from gateway.core.ports import AuditQuery
from gateway.core.types import AuditRecord, EventKind
from gateway.demo.setup import demo_token
from tests.e2e.conftest import DemoStack
from tests.e2e.test_exchange import error_info
from tests.support import grpc_stub

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOORS = ["rest", "grpc"]
REASON = "Laptop stolen, ticket INC-4711"


def admin_token(demo: DemoStack) -> str:
    return demo_token(demo.data_dir, issuer_id="demo-staff", subject="admin", scope="admin")


async def call(demo: DemoStack, door: str, method: str, **body: object) -> tuple[int, dict[str, object]]:
    """(HTTP-like status, answer or {"reason": code}) of a Revocations call through ``door``."""
    if door == "rest":
        path = {"Revoke": "/v1/admin/revocations", "Reinstate": "/v1/admin/revocations:reinstate"}[method]
        camel = {("untilUs" if k == "until_us" else k): v for k, v in body.items()}
        r = await demo.rest.post(path, json=camel, headers={"authorization": f"Bearer {admin_token(demo)}"})
        return r.status_code, r.json()
    stub = grpc_stub(revocations_pb2_grpc.RevocationsStub, demo.channel)
    request = {"Revoke": pb.RevokeRequest, "Reinstate": pb.ReinstateRequest}[method](**body)
    try:
        answer = await getattr(stub, method)(request, metadata=(("authorization", f"Bearer {admin_token(demo)}"),))
    except grpc.aio.AioRpcError as err:
        status = {grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.INVALID_ARGUMENT: 400}.get(err.code(), 500)
        return status, {"reason": error_info(err).reason}
    return 200, {"removed": getattr(answer, "removed", None), "value": getattr(answer, "value", None)}


async def changes(demo: DemoStack, method: str) -> list[AuditRecord]:
    rows = await demo.running.gateway.audit.query(AuditQuery(limit=100_000))
    return [s.record for s in rows
            if s.record.kind is EventKind.ADMIN and s.record.service.endswith(f"Revocations/{method}")]  # fmt: skip


async def revoked(demo: DemoStack, kind: str, value: str) -> bool:
    r = await demo.rest.get("/v1/admin/revocations", headers={"authorization": f"Bearer {admin_token(demo)}"})
    return any((e["kind"], e["value"]) == (kind, value) for e in r.json().get("revocations", []))


@contextmanager
def audit_down(demo: DemoStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    async def refuse(record: AuditRecord) -> None:
        raise GatewayError(Reason.AUDIT_UNAVAILABLE)

    with monkeypatch.context() as m:
        m.setattr(demo.running.gateway.audit, "append", refuse)
        yield


@pytest.mark.parametrize("door", DOORS)
async def test_revoking_a_token_id_records_its_hash_reason_expiry_and_actor(demo: DemoStack, door: str) -> None:
    jti = f"jti-{door}-{time.time_ns()}"
    until = int(time.time() * 1e6) + 3_600_000_000
    status, _ = await call(demo, door, "Revoke", kind="jti", value=jti, reason=REASON, until_us=until)
    assert status == 200 and await revoked(demo, "jti", jti)
    rec = (await changes(demo, "Revoke"))[-1]
    assert rec.extra["target"] == "sha256:" + hashlib.sha256(jti.encode()).hexdigest()
    assert (rec.extra["target_kind"], rec.extra["change_reason"], rec.extra["result"]) == ("jti", REASON, "done")
    assert rec.extra["actor"] == "staff:admin" and rec.extra["until"].endswith("Z")
    assert jti not in repr(rec)


@pytest.mark.parametrize("door", DOORS)
async def test_reinstating_a_key_records_done_then_no_op(demo: DemoStack, door: str) -> None:
    kid = f"kid-{door}-{time.time_ns()}"
    assert (await call(demo, door, "Revoke", kind="key", value=kid, reason="compromised"))[0] == 200
    status, body = await call(demo, door, "Reinstate", kind="key", value=kid, reason="false alarm")
    assert (status, body.get("removed")) == (200, True) and not await revoked(demo, "key", kid)
    status, body = await call(demo, door, "Reinstate", kind="key", value=kid, reason="again")
    assert status == 200 and not body.get("removed")
    done, no_op = (await changes(demo, "Reinstate"))[-2:]
    assert (done.extra["target"], done.extra["result"], done.extra["change_reason"]) == (kid, "done", "false alarm")
    assert (no_op.extra["target"], no_op.extra["result"]) == (kid, "no-op")


@pytest.mark.parametrize("door", DOORS)
async def test_with_the_audit_log_down_a_revocation_is_not_made(
    demo: DemoStack, door: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jti = f"down-{door}-{time.time_ns()}"
    before = len(await changes(demo, "Revoke"))
    with audit_down(demo, monkeypatch):
        status, body = await call(demo, door, "Revoke", kind="jti", value=jti, reason=REASON)
    assert (status, body["reason"]) == (503, "AUDIT_UNAVAILABLE")
    assert not await revoked(demo, "jti", jti) and len(await changes(demo, "Revoke")) == before


@pytest.mark.parametrize("door", DOORS)
async def test_with_the_audit_log_down_a_reinstatement_is_not_made(
    demo: DemoStack, door: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kid = f"kept-{door}-{time.time_ns()}"
    assert (await call(demo, door, "Revoke", kind="key", value=kid, reason="rotated"))[0] == 200
    with audit_down(demo, monkeypatch):
        status, _ = await call(demo, door, "Reinstate", kind="key", value=kid, reason="rotation undone")
    assert status == 503 and await revoked(demo, "key", kid)


@pytest.mark.parametrize("door", DOORS)
async def test_a_revocation_without_a_reason_is_refused(demo: DemoStack, door: str) -> None:
    """Issue 10 review, finding 9: the log keeps why."""
    kid = f"no-reason-{door}-{time.time_ns()}"
    before = len(await changes(demo, "Revoke"))
    for reason in ("", "   "):
        status, body = await call(demo, door, "Revoke", kind="key", value=kid, reason=reason)
        assert (status, body["reason"]) == (400, "INVALID_ARGUMENT")
    assert not await revoked(demo, "key", kid) and len(await changes(demo, "Revoke")) == before


@pytest.mark.parametrize("door", DOORS)
async def test_revoking_what_is_already_revoked_is_recorded_as_a_no_op(demo: DemoStack, door: str) -> None:
    """Issue 10 review, finding 9: a duplicate revocation changes nothing, and the log says so."""
    kid = f"twice-{door}-{time.time_ns()}"
    assert (await call(demo, door, "Revoke", kind="key", value=kid, reason="compromised"))[0] == 200
    assert (await call(demo, door, "Revoke", kind="key", value=kid, reason="compromised, really"))[0] == 200
    first, second = (await changes(demo, "Revoke"))[-2:]
    assert (first.extra["result"], second.extra["result"]) == ("done", "no-op")


@pytest.mark.parametrize("reason", ["x" * 201, "line\nbreak", "for 1991062434054"])
@pytest.mark.parametrize("door", DOORS)
async def test_a_reason_that_may_not_be_recorded_is_refused(demo: DemoStack, door: str, reason: str) -> None:
    jti = f"r-{door}-{time.time_ns()}"
    status, body = await call(demo, door, "Revoke", kind="jti", value=jti, reason=reason)
    assert (status, body["reason"]) == (400, "INVALID_ARGUMENT") and not await revoked(demo, "jti", jti)


async def test_with_the_audit_log_down_a_mandate_change_is_not_made(
    demo: DemoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {"authorization": f"Bearer {admin_token(demo)}"}
    url = "/v1/admin/mandates/cedies-person-student-aid"
    original = (await demo.rest.get(url, headers=headers)).json()
    narrowed = {**original, "fields": ["given_names"], "categories": [], "changeReason": "narrow to names"}
    for key in ("origin", "updatedAt", "updatedBy"):
        narrowed.pop(key, None)
    with audit_down(demo, monkeypatch):
        r = await demo.rest.put(url, json=narrowed, headers=headers)
    assert (r.status_code, r.json()["reason"]) == (503, "AUDIT_UNAVAILABLE")
    assert (await demo.rest.get(url, headers=headers)).json() == original


async def test_a_mandate_change_records_reason_and_result(demo: DemoStack) -> None:
    headers = {"authorization": f"Bearer {admin_token(demo)}"}
    body = {"consumer": "sandbox", "service": "registry.population.v1.PopulationRegistry/GetPerson",
            "purposes": ["student-aid"], "legalBasis": "A6-1-e", "fields": ["given_names"],
            "validUntil": "2099-12-31", "changeReason": "pilot, ticket CHG-12"}  # fmt: skip
    r = await demo.rest.put("/v1/admin/mandates/evidence-pilot", json=body, headers=headers)
    assert r.status_code == 200, r.text
    r = await demo.rest.delete("/v1/admin/mandates/evidence-pilot", params={"reason": "pilot over"}, headers=headers)
    assert r.status_code == 200
    rows = await demo.running.gateway.audit.query(AuditQuery(limit=100_000))
    made = [s.record.extra for s in rows if s.record.extra.get("mandate_id") == "evidence-pilot"]
    assert [(e["action"], e["change_reason"], e["result"]) for e in made] == [
        ("create", "pilot, ticket CHG-12", "done"), ("delete", "pilot over", "done")]
    assert made[0]["until"].startswith("2099-12-31") and made[0]["target"] == "evidence-pilot"


@pytest.mark.parametrize("door", DOORS)
async def test_an_expiry_beyond_any_calendar_is_refused_not_a_crash(demo: DemoStack, door: str) -> None:
    status, body = await call(demo, door, "Revoke", kind="jti", value=f"far-{door}", reason=REASON,
                              until_us=2**62)  # fmt: skip
    assert status == 400 and body.get("reason") == "INVALID_ARGUMENT", body
