"""Quotas, revocation and key rotation over real sockets."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.stores.revocations_sqlite import SqliteRevocationStore
from gateway._pb.registry.business.v1 import business_pb2, business_pb2_grpc
from gateway.application.revocations import RevocationSync
from gateway.core.quotas import AddressQuotas, KeyedBuckets, PrincipalQuotas
from gateway.core.revocation import RevocationList
from gateway.demo.setup import demo_token, key_id
from gateway.entrypoints._address_limits import GrpcAddressLimits
from tests.security.conftest import SecurityStack
from tests.security.test_attacks import grpc_reason, person, rest_reason
from tests.support import grpc_stub

pytestmark = pytest.mark.asyncio(loop_scope="module")


def company(s: SecurityStack) -> str:
    return s.data.companies[0].rcs_number


async def test_burst_over_the_quota_is_refused_with_retry_after_and_others_are_served(stack: SecurityStack) -> None:
    """``procurement`` may burst 3 then 0.5/s; ``cedies`` keeps being served meanwhile."""
    headers = {"authorization": f"Bearer {stack.token('procurement')}", "x-purpose": "procurement-check"}
    statuses, refused = [], None
    for _ in range(6):
        r = await stack.rest.get(f"/v1/business/companies/{company(stack)}", headers=headers)
        statuses.append(r.status_code)
        if r.status_code == 429:
            refused = r
    assert statuses.count(200) <= 3 and 429 in statuses
    assert refused is not None and refused.json()["reason"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) >= 1
    stub = grpc_stub(business_pb2_grpc.BusinessRegistryStub, stack.channel)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.GetCompany(
            business_pb2.GetCompanyRequest(rcs_number=company(stack)), metadata=tuple(headers.items())
        )
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert any(k == "grpc-status-details-bin" for k, _ in exc.value.trailing_metadata() or ())
    ok = await stack.rest.get(
        f"/v1/population/persons/{person(stack)}",
        headers={"authorization": f"Bearer {stack.token()}", "x-purpose": "student-aid"},
    )
    assert ok.status_code == 200


async def test_concurrency_over_the_limit_is_refused(stack: SecurityStack) -> None:
    admission = stack.running.gateway.pipeline._admission
    assert admission is not None
    admission.acquire("sandbox", 0.0)  # hold sandbox's slots as in-flight calls would
    quota = admission.quota("sandbox")
    for _ in range(quota.max_concurrent - 1):
        admission.acquire("sandbox", 0.0)
    try:
        headers = {"authorization": f"Bearer {stack.token('sandbox')}", "x-purpose": "student-aid"}
        r = await stack.rest.get(f"/v1/population/persons/{person(stack)}", headers=headers)
        assert (r.status_code, r.json()["reason"]) == (429, "CONCURRENCY_LIMITED")
        assert r.headers["retry-after"] == "1"
    finally:
        for _ in range(quota.max_concurrent):
            admission.release("sandbox")


def admin(stack: SecurityStack) -> dict[str, str]:
    return {
        "authorization": f"Bearer {demo_token(stack.data_dir, issuer_id='demo-staff', subject='admin', scope='admin')}"
    }


async def test_revoking_a_consumer_takes_effect_at_once_even_for_cached_tokens(stack: SecurityStack) -> None:
    token = stack.token("sandbox")
    headers = {"authorization": f"Bearer {token}"}
    assert (await stack.rest.get("/v1/catalogue", headers=headers)).status_code == 200  # now cached
    r = await stack.rest.post(
        "/v1/admin/revocations", headers=admin(stack), json={"kind": "consumer", "value": "sandbox", "reason": "test"}
    )
    assert r.status_code == 200, r.text
    try:
        refused = await stack.rest.get("/v1/catalogue", headers=headers)
        assert (refused.status_code, refused.json()["reason"]) == (401, "TOKEN_REVOKED")
        assert await grpc_reason(stack, stack.token("sandbox")) == "TOKEN_REVOKED"
        listed = (await stack.rest.get("/v1/admin/revocations", headers=admin(stack))).json()["revocations"]
        assert {"kind": "consumer", "value": "sandbox"}.items() <= listed[-1].items()
    finally:
        r = await stack.rest.post(
            "/v1/admin/revocations:reinstate", headers=admin(stack), json={"kind": "consumer", "value": "sandbox"}
        )
    assert r.json() == {"removed": True}
    assert (await stack.rest.get("/v1/catalogue", headers=headers)).status_code == 200


async def test_revocations_need_the_admin_scope(stack: SecurityStack) -> None:
    r = await stack.rest.post(
        "/v1/admin/revocations",
        headers={"authorization": f"Bearer {stack.token()}"},
        json={"kind": "consumer", "value": "cedies"},
    )
    assert (r.status_code, r.json()["reason"]) == (403, "WRONG_TOKEN_SCOPE")
    ops = demo_token(stack.data_dir, issuer_id="demo-staff", subject="ops", scope="ops")
    r = await stack.rest.post(
        "/v1/admin/revocations",
        headers={"authorization": f"Bearer {ops}"},
        json={"kind": "consumer", "value": "cedies"},
    )
    assert (r.status_code, r.json()["reason"]) == (403, "WRONG_TOKEN_SCOPE")


async def test_a_revocation_reaches_another_process_on_the_same_store(stack: SecurityStack) -> None:
    """A second gateway process is simulated by a second store connection and sync loop on the same file."""
    other = SqliteRevocationStore(stack.data_dir / "revocations.db")
    view = RevocationList()
    sync = RevocationSync(other, view, [], lambda: 0)
    try:
        await sync.poll()
        r = await stack.rest.post(
            "/v1/admin/revocations", headers=admin(stack), json={"kind": "jti", "value": "stolen-jti", "reason": "leak"}
        )
        assert r.status_code == 200
        await sync.poll()
        assert "stolen-jti" in view.jtis
    finally:
        await other.close()


async def test_revoking_a_key_refuses_its_tokens_and_survives_a_restart_of_the_store(stack: SecurityStack) -> None:
    _, kid = stack.signing_key("demo-citizens")
    citizen = demo_token(stack.data_dir, issuer_id="demo-citizens", subject="x", scope="citizen")
    body = {"kind": "key", "value": kid, "reason": "key compromised"}
    r = await stack.rest.post("/v1/admin/revocations", headers=admin(stack), json=body)
    assert r.status_code == 200
    try:
        refused = await stack.rest.get("/v1/me/accesses", headers={"authorization": f"Bearer {citizen}"})
        assert refused.json()["reason"] == "TOKEN_REVOKED"
        reopened = SqliteRevocationStore(stack.data_dir / "revocations.db")
        try:
            assert any(x.value == kid for x in await reopened.active(0))
        finally:
            await reopened.close()
    finally:
        await stack.rest.post(
            "/v1/admin/revocations:reinstate", headers=admin(stack), json={"kind": "key", "value": kid}
        )


async def test_a_new_key_in_the_jwks_file_is_used_without_restart_and_a_removed_key_is_refused(
    stack: SecurityStack,
) -> None:
    """Rotation: add a key next to the old one, sign with it, then drop the old one."""
    jwks_path = stack.data_dir / "keys" / "demo-agencies.jwks.json"
    original = jwks_path.read_text()
    old_token = stack.token()
    new_key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(new_key.public_key()))
    public.update({"kid": key_id(public), "use": "sig", "alg": "ES256"})
    doc = json.loads(original)
    try:
        jwks_path.write_text(json.dumps({"keys": [*doc["keys"], public]}))
        new_token = jwt.encode(stack.claims(), new_key, algorithm="ES256", headers={"kid": public["kid"]})
        assert await rest_reason_ok(stack, new_token) == 200  # unknown kid: the file is re-read
        assert await rest_reason_ok(stack, old_token) == 200  # both keys during the overlap
        jwks_path.write_text(json.dumps({"keys": [public]}))
        for keys in stack.running.gateway.verifier.key_sets():  # what the once-a-second check does
            await keys.refresh()  # type: ignore[attr-defined]
        assert await rest_reason(stack, {"authorization": f"Bearer {old_token}"}) == (401, "UNKNOWN_KEY")
    finally:
        jwks_path.write_text(original)
        for keys in stack.running.gateway.verifier.key_sets():
            await keys.refresh()  # type: ignore[attr-defined]


async def rest_reason_ok(stack: SecurityStack, token: str) -> int:
    r = await stack.rest.get(
        f"/v1/population/persons/{person(stack)}",
        headers={"authorization": f"Bearer {token}", "x-purpose": "student-aid"},
    )
    return r.status_code


# --- quotas of citizens and staff, limits per client address ------------------------------------------------


@contextlib.contextmanager
def principal_quota(stack: SecurityStack, kind: str, burst: int) -> Iterator[None]:
    """A tiny quota for ``kind`` (almost no refill) for the block; the configured one afterwards."""
    verifier = stack.running.gateway.verifier
    saved = verifier.principal_quotas
    verifier.principal_quotas = PrincipalQuotas({kind: KeyedBuckets(0.001, burst)})
    try:
        yield
    finally:
        verifier.principal_quotas = saved


def address_quotas(stack: SecurityStack) -> AddressQuotas:
    found = [i.quotas for i in stack.running.gateway.grpc_interceptors if isinstance(i, GrpcAddressLimits)]
    assert len(found) == 1
    return found[0]


@contextlib.contextmanager
def address_limits(stack: SecurityStack, *, anonymous: int = 10_000, failed: int = 10_000) -> Iterator[AddressQuotas]:
    quotas = address_quotas(stack)
    saved = quotas.anonymous, quotas.failed_auth
    quotas.anonymous, quotas.failed_auth = KeyedBuckets(0.001, anonymous), KeyedBuckets(0.001, failed)
    try:
        yield quotas
    finally:
        quotas.anonymous, quotas.failed_auth = saved


def grpc_call(stack: SecurityStack, method: str) -> Any:
    return stack.channel.unary_unary(method, request_serializer=None, response_deserializer=None)


async def grpc_code(stack: SecurityStack, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.StatusCode:
    try:
        await grpc_call(stack, method)(b"", metadata=metadata, timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("kind", "token_of", "path", "method"),
    [
        ("citizen", lambda s: demo_token(s.data_dir, issuer_id="demo-citizens", subject=person(s), scope="citizen"),
         "/v1/me/accesses", "/passerelle.gateway.v1.CitizenAccesses/ListMyAccesses"),
        ("staff", lambda s: demo_token(s.data_dir, issuer_id="demo-staff", subject="ops", scope="ops"),
         "/v1/ops/exchanges", "/passerelle.gateway.v1.Operations/ListExchanges"),
    ],
    ids=["citizen", "staff"],
)
async def test_citizens_and_staff_have_quotas_on_both_doors(
    stack: SecurityStack, kind: str, token_of: Any, path: str, method: str
) -> None:
    token = token_of(stack)
    headers = {"authorization": f"Bearer {token}"}
    with principal_quota(stack, kind, burst=2):
        statuses = [(await stack.rest.get(path, headers=headers)).status_code for _ in range(2)]
        refused = await stack.rest.get(path, headers=headers)
        code = await grpc_code(stack, method, tuple(headers.items()))
        fresh = await stack.rest.get(path, headers={"authorization": f"Bearer {token_of(stack)}"})
    assert statuses == [200, 200], statuses
    assert (refused.status_code, refused.json()["reason"]) == (429, "RATE_LIMITED")
    assert int(refused.headers["retry-after"]) >= 1
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert fresh.status_code == 429, "a new token of the same person shares the quota"


async def test_another_citizen_is_served_while_one_is_over_quota(stack: SecurityStack) -> None:
    nids = [p.national_id for p in stack.data.persons[:2]]
    tokens = [demo_token(stack.data_dir, issuer_id="demo-citizens", subject=n, scope="citizen") for n in nids]
    with principal_quota(stack, "citizen", burst=1):
        first = [(await stack.rest.get("/v1/me/accesses", headers={"authorization": f"Bearer {t}"})).status_code
                 for t in (tokens[0], tokens[0], tokens[1])]
    assert first == [200, 429, 200]


async def test_calls_without_a_token_are_limited_per_client_address_on_rest(stack: SecurityStack) -> None:
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 (a local proxy): it names the client here."""
    with address_limits(stack, anonymous=3):
        for path in ("/v1/audit/checkpoints", "/.well-known/jwks.json", "/readyz"):
            r = await stack.rest.get(path, headers={"x-forwarded-for": "203.0.113.7"})
            assert r.status_code in (200, 503), (path, r.status_code)
        refused = await stack.rest.get("/v1/audit/checkpoints", headers={"x-forwarded-for": "203.0.113.7"})
        elsewhere = await stack.rest.get("/v1/audit/checkpoints", headers={"x-forwarded-for": "203.0.113.8"})
    assert (refused.status_code, refused.json()["reason"]) == (429, "RATE_LIMITED")
    assert int(refused.headers["retry-after"]) >= 1
    assert elsewhere.status_code == 200


async def test_calls_without_a_token_are_limited_per_client_address_on_grpc(stack: SecurityStack) -> None:
    method = "/passerelle.gateway.v1.AuditCheckpoints/ListCheckpoints"
    with address_limits(stack, anonymous=2):
        codes = [await grpc_code(stack, method) for _ in range(3)]
    assert codes == [grpc.StatusCode.OK, grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED]


async def test_an_address_that_fails_authentication_too_often_is_refused_before_its_token_is_read(
    stack: SecurityStack,
) -> None:
    good = {"authorization": f"Bearer {stack.token()}", "x-purpose": "student-aid"}
    junk = {"authorization": "Bearer junk", "x-forwarded-for": "198.51.100.9"}
    with address_limits(stack, failed=2):
        fails = [(await stack.rest.get("/v1/catalogue", headers=junk)).status_code for _ in range(2)]
        blocked = await stack.rest.get(f"/v1/population/persons/{person(stack)}",
                                       headers={**good, "x-forwarded-for": "198.51.100.9"})
        served = await stack.rest.get(f"/v1/population/persons/{person(stack)}", headers=good)
        grpc_fails = [await grpc_code(stack, "/passerelle.gateway.v1.Operations/ListExchanges",
                                      (("authorization", "Bearer junk"),)) for _ in range(3)]
    assert fails == [401, 401]
    assert (blocked.status_code, blocked.json()["reason"]) == (429, "RATE_LIMITED")
    assert served.status_code == 200
    assert grpc_fails == [grpc.StatusCode.UNAUTHENTICATED] * 2 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
