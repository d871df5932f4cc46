"""The JWT attack suite: every forged, stolen, replayed or reshaped token is refused on both doors.

Each case goes over a real socket, is refused with its reason code, is counted
as a security event, and reaches no registry.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway._pb.registry.population.v1 import population_pb2, population_pb2_grpc
from gateway.core.dpop import key_thumbprint, make_proof
from gateway.demo.pki import cert_file_thumbprint
from tests.security.conftest import SecurityStack
from tests.support import grpc_stub

pytestmark = pytest.mark.asyncio(loop_scope="module")


def person(stack: SecurityStack) -> str:
    return stack.data.households[0].members[0]


def hs256_with_public_key(s: SecurityStack) -> str:
    """The classic key-confusion forgery: HMAC keyed with the issuer's published public key."""
    private, kid = s.signing_key()
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    unsigned = s.unsigned({"alg": "HS256", "typ": "JWT", "kid": kid}, s.claims())
    head, body, _ = unsigned.split(".")
    sig = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return s.unsigned({"alg": "HS256", "typ": "JWT", "kid": kid}, s.claims(), sig)


def revoked(s: SecurityStack) -> str:
    jti = uuid.uuid4().hex
    s.running.gateway.verifier.revocations.jtis.add(jti)
    return s.token(jti=jti)


def now() -> int:
    return int(time.time())


#: (case, token maker, reason). Every case is run on REST and on gRPC.
TOKEN_ATTACKS: list[tuple[str, Callable[[SecurityStack], str], str]] = [
    (
        "alg none",
        lambda s: s.unsigned({"alg": "none", "typ": "JWT", "kid": s.signing_key()[1]}, s.claims()),
        "TOKEN_INVALID",
    ),
    ("HS256 keyed with the public key", hs256_with_public_key, "TOKEN_INVALID"),
    ("unknown kid", lambda s: s.token(kid="no-such-key"), "UNKNOWN_KEY"),
    ("kid path traversal", lambda s: s.token(kid="../../../../etc/passwd"), "UNKNOWN_KEY"),
    ("kid SQL injection", lambda s: s.token(kid="' OR '1'='1' --"), "UNKNOWN_KEY"),
    ("expired", lambda s: s.token(iat=now() - 600, nbf=now() - 600, exp=now() - 120), "TOKEN_EXPIRED"),
    ("nbf in the future", lambda s: s.token(nbf=now() + 300, exp=now() + 600), "TOKEN_NOT_YET_VALID"),
    ("iat in the future", lambda s: s.token(iat=now() + 300, nbf=None, exp=now() + 600), "TOKEN_NOT_YET_VALID"),
    ("lifetime over the maximum", lambda s: s.token(exp=now() + 3600), "TOKEN_LIFETIME_TOO_LONG"),
    ("wrong aud", lambda s: s.token(aud="urn:someone:else"), "TOKEN_WRONG_AUDIENCE"),
    ("wrong iss", lambda s: s.token(iss="https://idp.attacker.invalid/agencies"), "UNKNOWN_ISSUER"),
    *[
        (f"no {claim}", (lambda c: lambda s: s.token(**{c: None}))(claim), "TOKEN_CLAIM_MISSING")
        for claim in ("iss", "aud", "sub", "exp", "iat", "jti")
    ],
    ("revoked jti", revoked, "TOKEN_REVOKED"),
    (
        "signed by another issuer's key",
        lambda s: s.token(signer="demo-citizens", kid=s.signing_key()[1]),
        "TOKEN_INVALID",
    ),
    ("another issuer's kid and key", lambda s: s.token(signer="demo-citizens"), "UNKNOWN_KEY"),
    ("truncated signature", lambda s: s.token()[:-22], "TOKEN_INVALID"),  # 64 of 86 base64 chars: wrong length
    ("truncated in half", lambda s: s.token()[: len(s.token()) // 2], "TOKEN_MALFORMED"),
    ("not base64", lambda s: "@@@.###.!!!", "TOKEN_MALFORMED"),
    ("9 kB token", lambda s: s.token(pad="x" * 9_000), "TOKEN_TOO_LARGE"),
    ("100 kB token", lambda s: s.token(pad="x" * 74_800), "HEADERS_TOO_LARGE"),
    ("unregistered subject", lambda s: s.token(sub="mallory"), "UNKNOWN_CONSUMER"),
    (
        "citizen token on an exchange",
        lambda s: s.token(sub="x", issuer_id="demo-citizens", scope="citizen"),
        "WRONG_TOKEN_SCOPE",
    ),
]


def reason_of(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(cast(grpc.Call, err))  # an AioRpcError has the trailers, code and details it reads
    assert status is not None, f"no rich status: {err.code()} {err.details()} {err.trailing_metadata()}"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason: str = info.reason  # google.* is untyped here: name what comes back
            return reason
    raise AssertionError("no ErrorInfo")


async def rest_reason(s: SecurityStack, headers: dict[str, str], path: str | None = None) -> tuple[int, str]:
    r = await s.rest.get(path or f"/v1/population/persons/{person(s)}", headers={"x-purpose": "student-aid", **headers})
    assert r.headers["content-type"] == "application/problem+json", r.text
    assert person(s) not in r.text
    return r.status_code, r.json()["reason"]


async def grpc_reason(s: SecurityStack, token: str, channel: grpc.aio.Channel | None = None) -> str:
    stub = grpc_stub(population_pb2_grpc.PopulationRegistryStub, channel or s.channel)
    md = (("authorization", f"Bearer {token}"), ("x-purpose", "student-aid"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.GetPerson(population_pb2.GetPersonRequest(national_id=person(s)), metadata=md, timeout=5)
    return reason_of(exc.value)


class Refused:
    """Checks that the block caused one security event of ``reason`` and no registry call."""

    def __init__(self, s: SecurityStack, reason: str, protocol: str) -> None:
        self.s, self.reason, self.protocol = s, reason, protocol

    def __enter__(self) -> None:
        self.events, self.calls = self.s.security_count(self.reason, self.protocol), self.s.registry_calls

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            assert self.s.security_count(self.reason, self.protocol) == self.events + 1
            assert self.s.registry_calls == self.calls


async def test_a_good_token_is_served_on_both_doors(stack: SecurityStack) -> None:
    """The control case: without it, every refusal below could be a broken stack."""
    calls = stack.registry_calls
    r = await stack.rest.get(
        f"/v1/population/persons/{person(stack)}",
        headers={"authorization": f"Bearer {stack.token()}", "x-purpose": "student-aid"},
    )
    assert r.status_code == 200, r.text
    stub = grpc_stub(population_pb2_grpc.PopulationRegistryStub, stack.channel)
    md = (("authorization", f"Bearer {stack.token()}"), ("x-purpose", "student-aid"))
    await stub.GetPerson(population_pb2.GetPersonRequest(national_id=person(stack)), metadata=md)
    assert stack.registry_calls == calls + 2


@pytest.mark.parametrize(("case", "make", "reason"), TOKEN_ATTACKS, ids=[c[0] for c in TOKEN_ATTACKS])
async def test_rest_refuses_attack(
    stack: SecurityStack, case: str, make: Callable[[SecurityStack], str], reason: str
) -> None:
    token = make(stack)
    with Refused(stack, reason, "rest"):
        status, got = await rest_reason(stack, {"authorization": f"Bearer {token}"})
        assert got == reason
    assert status == (431 if reason == "HEADERS_TOO_LARGE" else 403 if reason == "WRONG_TOKEN_SCOPE" else 401)


@pytest.mark.parametrize(("case", "make", "reason"), TOKEN_ATTACKS, ids=[c[0] for c in TOKEN_ATTACKS])
async def test_grpc_refuses_attack(
    stack: SecurityStack, case: str, make: Callable[[SecurityStack], str], reason: str
) -> None:
    token = make(stack)
    with Refused(stack, reason, "grpc"):
        assert await grpc_reason(stack, token) == reason


# --- certificate-bound tokens (RFC 8705) --------------------------------------------------------------


def cert_bound(s: SecurityStack, client: str = "cedies") -> str:
    thumb = cert_file_thumbprint(s.data_dir / "keys" / "tls" / f"{client}.pem")
    return s.token(cnf={"x5t#S256": thumb})


async def test_cert_bound_token_is_served_over_its_own_certificate(stack: SecurityStack) -> None:
    async with stack.tls_channel("cedies") as channel:
        stub = grpc_stub(population_pb2_grpc.PopulationRegistryStub, channel)
        md = (("authorization", f"Bearer {cert_bound(stack)}"), ("x-purpose", "student-aid"))
        answer = await stub.GetPerson(population_pb2.GetPersonRequest(national_id=person(stack)), metadata=md)
    assert answer.family_name


async def test_cert_bound_token_over_another_clients_certificate_is_refused(stack: SecurityStack) -> None:
    async with stack.tls_channel("procurement") as channel:
        with Refused(stack, "SENDER_CONSTRAINT_FAILED", "grpc"):
            assert await grpc_reason(stack, cert_bound(stack), channel) == "SENDER_CONSTRAINT_FAILED"


async def test_cert_bound_token_without_a_certificate_is_refused_on_both_doors(stack: SecurityStack) -> None:
    with Refused(stack, "SENDER_CONSTRAINT_FAILED", "grpc"):
        assert await grpc_reason(stack, cert_bound(stack)) == "SENDER_CONSTRAINT_FAILED"
    with Refused(stack, "SENDER_CONSTRAINT_FAILED", "rest"):
        assert await rest_reason(stack, {"authorization": f"Bearer {cert_bound(stack)}"}) == (
            401,
            "SENDER_CONSTRAINT_FAILED",
        )


async def test_tls_port_refuses_clients_without_a_certificate(stack: SecurityStack) -> None:
    async with stack.tls_channel(None) as channel:
        stub = grpc_stub(population_pb2_grpc.PopulationRegistryStub, channel)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.GetPerson(population_pb2.GetPersonRequest(national_id=person(stack)), timeout=5)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


# --- DPoP-bound tokens (RFC 9449) -----------------------------------------------------------------------


class DpopClient:
    def __init__(self, s: SecurityStack) -> None:
        self.s = s
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.token = s.token(cnf={"jkt": key_thumbprint(self.key)})
        self.path = f"/v1/population/persons/{person(s)}"
        self.url = f"{s.rest.base_url}{self.path}".replace("//v1", "/v1")

    def headers(self, proof: str, token: str | None = None) -> dict[str, str]:
        return {"authorization": f"DPoP {token or self.token}", "dpop": proof}


async def test_dpop_bound_token_with_a_fresh_proof_is_served(stack: SecurityStack) -> None:
    c = DpopClient(stack)
    for _ in range(2):
        r = await stack.rest.get(
            c.path, headers={**c.headers(make_proof(c.key, "GET", c.url, c.token)), "x-purpose": "student-aid"}
        )
        assert r.status_code == 200, r.text


def _replayed(c: DpopClient) -> tuple[str, str]:
    return make_proof(c.key, "GET", c.url, c.token, jti="once"), c.token


DPOP_ATTACKS: list[tuple[str, Callable[[DpopClient], tuple[str, str]], str]] = [
    ("no proof", lambda c: ("", c.token), "DPOP_PROOF_INVALID"),
    (
        "proof for another URL",
        lambda c: (make_proof(c.key, "GET", c.url + "x", c.token), c.token),
        "DPOP_PROOF_INVALID",
    ),
    ("proof for another method", lambda c: (make_proof(c.key, "POST", c.url, c.token), c.token), "DPOP_PROOF_INVALID"),
    (
        "proof for another token",
        lambda c: (make_proof(c.key, "GET", c.url, c.s.token()), c.token),
        "DPOP_PROOF_INVALID",
    ),
    (
        "stale proof",
        lambda c: (make_proof(c.key, "GET", c.url, c.token, now=time.time() - 600), c.token),
        "DPOP_PROOF_INVALID",
    ),
    (
        "stolen token, thief's own key",
        lambda c: (make_proof(ec.generate_private_key(ec.SECP256R1()), "GET", c.url, c.token), c.token),
        "SENDER_CONSTRAINT_FAILED",
    ),
]


@pytest.mark.parametrize(("case", "make", "reason"), DPOP_ATTACKS, ids=[c[0] for c in DPOP_ATTACKS])
async def test_rest_refuses_dpop_attack(
    stack: SecurityStack, case: str, make: Callable[[DpopClient], tuple[str, str]], reason: str
) -> None:
    c = DpopClient(stack)
    proof, token = make(c)
    headers = c.headers(proof, token) if proof else {"authorization": f"DPoP {token}"}
    with Refused(stack, reason, "rest"):
        assert await rest_reason(stack, headers) == (401, reason)


async def test_replayed_dpop_proof_is_refused(stack: SecurityStack) -> None:
    c = DpopClient(stack)
    proof = make_proof(c.key, "GET", c.url, c.token)
    r = await stack.rest.get(c.path, headers={**c.headers(proof), "x-purpose": "student-aid"})
    assert r.status_code == 200, r.text
    with Refused(stack, "DPOP_PROOF_INVALID", "rest"):
        assert await rest_reason(stack, c.headers(proof)) == (401, "DPOP_PROOF_INVALID")


async def test_a_proof_made_for_a_forged_host_header_is_refused(stack: SecurityStack) -> None:
    """``htu`` is checked against the gateway's own address (or ``public_url``), never the ``Host`` header."""
    c = DpopClient(stack)
    proof = make_proof(c.key, "GET", f"http://evil.example{c.path}", c.token)
    with Refused(stack, "DPOP_PROOF_INVALID", "rest"):
        assert await rest_reason(stack, {**c.headers(proof), "host": "evil.example"}) == (401, "DPOP_PROOF_INVALID")


async def test_a_proof_for_the_gateway_url_is_served_whatever_the_host_header(stack: SecurityStack) -> None:
    c = DpopClient(stack)
    r = await stack.rest.get(c.path, headers={**c.headers(make_proof(c.key, "GET", c.url, c.token)),
                                              "host": "evil.example", "x-purpose": "student-aid"})
    assert r.status_code == 200, r.text


async def test_with_a_public_url_proofs_must_name_it(stack: SecurityStack) -> None:
    c = DpopClient(stack)
    verifier = stack.running.gateway.verifier
    verifier.public_url = "https://passerelle.example.lu/gw"
    try:
        public = make_proof(c.key, "GET", f"https://passerelle.example.lu/gw{c.path}", c.token)
        served = await stack.rest.get(c.path, headers={**c.headers(public), "x-purpose": "student-aid"})
        with Refused(stack, "DPOP_PROOF_INVALID", "rest"):
            assert await rest_reason(stack, c.headers(make_proof(c.key, "GET", c.url, c.token))) == (
                401, "DPOP_PROOF_INVALID")
    finally:
        verifier.public_url = ""
    assert served.status_code == 200, served.text


async def test_dpop_bound_token_is_refused_on_grpc(stack: SecurityStack) -> None:
    """gRPC has no DPoP: a DPoP-bound token stolen from a REST client is useless there, and the refusal
    says to use a certificate-bound token on gRPC (docs/security.md)."""
    c = DpopClient(stack)
    with Refused(stack, "SENDER_CONSTRAINT_FAILED", "grpc"):
        assert await grpc_reason(stack, c.token) == "SENDER_CONSTRAINT_FAILED"


# --- flood -------------------------------------------------------------------------------------------------


async def test_a_flood_of_junk_is_counted_but_logged_at_a_bounded_rate(
    stack: SecurityStack, caplog: pytest.LogCaptureFixture
) -> None:
    """Every junk token is counted; the log takes a bounded share (burst 20, then 10/s)."""
    security = stack.running.gateway.security
    before = security.counts.get(("TOKEN_MALFORMED", "rest"), 0)
    answers = []
    with caplog.at_level("WARNING", logger="passerelle.security"):
        for _ in range(4):
            answers += await asyncio.gather(
                *(stack.rest.get("/v1/catalogue", headers={"authorization": "Bearer junk"}) for _ in range(50))
            )
    logged = [r for r in caplog.records if r.name == "passerelle.security"]
    # A junk token is read and counted unless the address already spent its failed-authentication allowance
    # (earlier tests in this module come from the same address): then it is RATE_LIMITED before being read.
    read = sum(1 for r in answers if r.json().get("reason") == "TOKEN_MALFORMED")
    assert read + sum(1 for r in answers if r.json().get("reason") == "RATE_LIMITED") == 200 and read > 150
    assert security.counts[("TOKEN_MALFORMED", "rest")] == before + read
    assert 0 < len(logged) < 200
    assert all("junk" not in r.getMessage() and "junk" not in str(getattr(r, "fields", "")) for r in logged)


async def test_the_100_kb_case_is_really_100_kb(stack: SecurityStack) -> None:
    make = dict((c[0], c[1]) for c in TOKEN_ATTACKS)["100 kB token"]
    assert len(make(stack)) >= 100_000
