"""Regressions from the independent review of issue 11 ("One request, one meaning").

Each test pins down one finding of the review, on both doors where both read the input: the
request is read one way or refused with a reason code of the error model, never a 5xx / INTERNAL.
The review's reproducers (tests/attack11) ran against a ``gateway serve --demo`` process; they run
here against the security suite's in-process stack, over real sockets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any, cast

import grpc
import httpx
import pytest
from fastapi import FastAPI
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from gateway._pb.passerelle.gateway.v1 import audit_pb2, ops_pb2
from gateway._pb.registry.population.v1 import population_pb2
from gateway.core.errors import Reason
from gateway.core.quotas import AddressQuotas, KeyedBuckets
from gateway.core.strict_json import StrictJsonError, loads_strict
from gateway.demo.setup import demo_token
from gateway.entrypoints._address_limits import GrpcAddressLimits
from gateway.entrypoints.routes_citizen import demo_installer
from tests.security.conftest import SecurityStack

pytestmark = pytest.mark.asyncio(loop_scope="module")

GET_PERSON = "/registry.population.v1.PopulationRegistry/GetPerson"
LIST_ACCESSES = "/passerelle.gateway.v1.CitizenAccesses/ListMyAccesses"
PROOF = "/passerelle.gateway.v1.CitizenAccesses/GetMyAccessProof"
LIST_EXCHANGES = "/passerelle.gateway.v1.Operations/ListExchanges"


def person(s: SecurityStack) -> str:
    return s.data.households[0].members[0]


def citizen(s: SecurityStack) -> str:
    return demo_token(s.data_dir, issuer_id="demo-citizens", subject=person(s), scope="citizen")


def staff(s: SecurityStack, scope: str) -> str:
    return demo_token(s.data_dir, issuer_id="demo-staff", subject=scope, scope=scope)


def agency(s: SecurityStack, **overrides: Any) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {s.token(**overrides)}"), ("x-purpose", "student-aid")]


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    status = rpc_status.from_call(cast(grpc.Call, exc))  # an AioRpcError has the trailers, code and details it reads
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


async def grpc_raw(
    s: SecurityStack,
    method: str,
    raw: bytes,
    metadata: Sequence[tuple[str, str]] = (),
    compression: grpc.Compression | None = None,
) -> tuple[str, str, dict[str, str]]:
    """(status name, ErrorInfo reason, ErrorInfo metadata) of one unary call with raw bytes."""
    try:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = s.channel.unary_unary(method)
        await call(raw, metadata=tuple(metadata), timeout=10, compression=compression)
    except grpc.aio.AioRpcError as exc:
        info = error_info(exc)
        return exc.code().name, info.reason if info else "", dict(info.metadata) if info else {}
    return "OK", "", {}


async def raw_http(s: SecurityStack, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request over its own connection, read to the end (asyncio: the gateway runs in this loop)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", s.running.rest_port)
    try:
        writer.write(request)
        await writer.drain()
        out = await asyncio.wait_for(reader.read(-1), timeout=10)
    finally:
        writer.close()
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def http_request(method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes | None = None) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    length = f"Content-Length: {len(body)}\r\n" if body is not None else ""
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}{length}\r\n".encode() + (body or b"")


def reason_of(body: bytes) -> str:
    return str(json.loads(body).get("reason", ""))


def demo_sign_in(s: SecurityStack) -> httpx.AsyncClient:
    """The demo sign-in route (only ``gateway serve --demo`` installs it) on an app of its own."""
    app = FastAPI()
    demo_installer(s.running.gateway)(app)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo")


@contextlib.contextmanager
def address_burst(s: SecurityStack, anonymous: int) -> Iterator[AddressQuotas]:
    """The stack's per-address limits with a tiny anonymous bucket (and no refill) for one test."""
    found = [i.quotas for i in s.running.gateway.grpc_interceptors if isinstance(i, GrpcAddressLimits)]
    quotas = found[0]
    saved = quotas.anonymous
    quotas.anonymous = KeyedBuckets(0.001, anonymous)
    try:
        yield quotas
    finally:
        quotas.anonymous = saved


# --- 1. a header that verifies nothing buys nothing; streaming gRPC calls are limited too ------------


async def test_a_dummy_authorization_header_does_not_bypass_the_address_limit_on_rest(stack: SecurityStack) -> None:
    headers = {"authorization": "x", "x-forwarded-for": "203.0.113.41"}
    with address_burst(stack, 3):
        statuses = [(await stack.rest.get("/v1/audit/checkpoints", headers=headers)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


async def test_a_dummy_authorization_metadata_does_not_bypass_the_address_limit_on_grpc(stack: SecurityStack) -> None:
    request = health_pb2.HealthCheckRequest().SerializeToString()
    with address_burst(stack, 2):
        codes = [
            (await grpc_raw(stack, "/grpc.health.v1.Health/Check", request, [("authorization", "x")]))[0]
            for _ in range(3)
        ]
    assert codes == ["OK", "OK", "RESOURCE_EXHAUSTED"]


async def test_streaming_grpc_calls_are_charged_to_the_address(stack: SecurityStack) -> None:
    """Reflection (bidirectional stream) and health Watch (server stream) were not limited at all."""
    reflection = reflection_pb2_grpc.ServerReflectionStub(stack.channel)
    health = health_pb2_grpc.HealthStub(stack.channel)
    with address_burst(stack, 1):
        first = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        assert [r async for r in first]
        with pytest.raises(grpc.aio.AioRpcError) as refused_watch:
            async for _ in health.Watch(health_pb2.HealthCheckRequest(), timeout=5):
                pass
        refused_before = stack.security_count("RATE_LIMITED", "grpc")
        with pytest.raises(grpc.aio.AioRpcError) as refused_reflection:
            again = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            _ = [r async for r in again]
    assert refused_watch.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The bidirectional call is refused by the server (counted); the client sees RESOURCE_EXHAUSTED, or — when
    # its request iterator's send races the server's early end — grpc core's INTERNAL "execute_batch" failure.
    assert stack.security_count("RATE_LIMITED", "grpc") == refused_before + 1
    assert refused_reflection.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED or (
        refused_reflection.value.code() == grpc.StatusCode.INTERNAL
        and "execute_batch" in (refused_reflection.value.debug_error_string() or "")), refused_reflection.value


async def test_calls_whose_token_verified_are_given_their_address_charge_back(stack: SecurityStack) -> None:
    headers = {
        "authorization": f"Bearer {stack.token()}",
        "x-purpose": "student-aid",
        "x-forwarded-for": "203.0.113.42",
    }
    request = population_pb2.GetPersonRequest(national_id=person(stack)).SerializeToString()
    with address_burst(stack, 2):
        statuses = [
            (await stack.rest.get(f"/v1/population/persons/{person(stack)}", headers=headers)).status_code
            for _ in range(4)
        ]
        codes = [(await grpc_raw(stack, GET_PERSON, request, agency(stack)))[0] for _ in range(4)]
    assert statuses == [200] * 4
    assert codes == ["OK"] * 4


# --- 2-4. caller numbers, dates and page tokens: 400 / INVALID_ARGUMENT, never 500 / INTERNAL ---------


async def test_a_proof_id_longer_than_the_int_digit_limit_is_not_internal(stack: SecurityStack) -> None:
    answer = await stack.rest.get(
        f"/v1/me/accesses/{'1' * 5000}/proof", headers={"authorization": f"Bearer {citizen(stack)}"}
    )
    code, reason, _ = await grpc_raw(
        stack,
        PROOF,
        audit_pb2.GetMyAccessProofRequest(id="1" * 5000).SerializeToString(),
        [("authorization", f"Bearer {citizen(stack)}")],
    )
    assert (answer.status_code, answer.json()["reason"]) == (404, "NOT_FOUND")
    assert (code, reason) == ("NOT_FOUND", "NOT_FOUND")


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v1/me/accesses?until=9999-12-31", "citizen"),
        ("/v1/me/accesses/export?until=9999-12-31", "citizen"),
        ("/v1/me/accesses?since=2024-W01-1", "citizen"),
        ("/v1/ops/exchanges?until=9999-12-31", "ops"),
        (f"/v1/ops/exchanges?pageToken={b64('ops:99999999999999999999999')}", "ops"),
        (f"/v1/ops/exchanges?pageToken={b64('ops:' + '9' * 5000)}", "ops"),
        (f"/v1/me/accesses?pageToken={b64('after:99999999999999999999999')}", "citizen"),
    ],
)
async def test_boundary_dates_and_page_tokens_are_invalid_arguments(stack: SecurityStack, path: str, kind: str) -> None:
    token = citizen(stack) if kind == "citizen" else staff(stack, "ops")
    answer = await stack.rest.get(path, headers={"authorization": f"Bearer {token}"})
    assert (answer.status_code, answer.json()["reason"]) == (400, "INVALID_ARGUMENT"), answer.text[:200]


@pytest.mark.parametrize(
    ("method", "request_", "kind"),
    [
        (LIST_ACCESSES, audit_pb2.ListMyAccessesRequest(until="9999-12-31"), "citizen"),
        (LIST_EXCHANGES, ops_pb2.ListExchangesRequest(until="9999-12-31"), "ops"),
        (LIST_EXCHANGES, ops_pb2.ListExchangesRequest(page_token=b64("ops:99999999999999999999999")), "ops"),
    ],
    ids=["citizen-until", "ops-until", "ops-page-token"],
)
async def test_boundary_dates_and_page_tokens_are_invalid_arguments_on_grpc(
    stack: SecurityStack, method: str, request_: Any, kind: str
) -> None:
    token = citizen(stack) if kind == "citizen" else staff(stack, "ops")
    code, reason, _ = await grpc_raw(
        stack, method, request_.SerializeToString(), [("authorization", f"Bearer {token}")]
    )
    assert (code, reason) == ("INVALID_ARGUMENT", "INVALID_ARGUMENT")


@pytest.mark.parametrize("hidden_days", [2147483647, 3651, -1])
async def test_an_embargo_outside_ten_years_is_refused_by_the_admin_api(stack: SecurityStack, hidden_days: int) -> None:
    """Accepted, 2147483647 days made every lookup under the mandate fail AUDIT_UNAVAILABLE (int64 overflow)."""
    body = {
        "consumer": "sandbox",
        "service": "registry.population.v1.PopulationRegistry/GetPerson",
        "purposes": ["student-aid"],
        "legalBasis": "A6-1-e",
        "legalReference": "x",
        "fields": ["given_names"],
        "changeReason": "regression",
        "hiddenDays": hidden_days,
        "hiddenReason": "investigation",
    }
    answer = await stack.rest.put(
        "/v1/admin/mandates/regression-hidden", json=body, headers={"authorization": f"Bearer {staff(stack, 'admin')}"}
    )
    assert (answer.status_code, answer.json()["reason"], answer.json().get("field")) == (
        400,
        "INVALID_ARGUMENT",
        "hidden_days",
    )


async def test_the_configuration_refuses_an_embargo_outside_ten_years() -> None:
    from pydantic import ValidationError

    from gateway.config import MandateSection

    base: dict[str, Any] = {"id": "m", "consumer": "c", "service": "a.B/C", "purposes": ["p"], "legal_basis": "A6-1-e"}
    assert MandateSection(**base, hidden_days=3650).hidden_days == 3650
    with pytest.raises(ValidationError):
        MandateSection(**base, hidden_days=3651)


# --- 5, 8. JSON bodies: one media type, one encoding, one parser -----------------------------------

CHECK = json.dumps(
    {
        "service": "registry.population.v1.PopulationRegistry/GetPerson",
        "purpose": "student-aid",
        "subject": "1991062434054",
    }
)


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (CHECK.encode("utf-16"), [("content-type", "application/json")], (400, "INVALID_ARGUMENT")),
        (b"\xef\xbb\xbf" + CHECK.encode(), [("content-type", "application/json")], (400, "INVALID_ARGUMENT")),
        (CHECK.encode(), [("content-type", "text/plain")], (415, "UNSUPPORTED_MEDIA_TYPE")),
        (CHECK.encode(), [], (415, "UNSUPPORTED_MEDIA_TYPE")),
        (CHECK.encode(), [("content-type", "application/json; charset=latin-1")], (415, "UNSUPPORTED_MEDIA_TYPE")),
        (
            CHECK.encode(),
            [("content-type", "application/json"), ("content-encoding", "gzip")],
            (415, "UNSUPPORTED_MEDIA_TYPE"),
        ),
    ],
    ids=["utf-16", "utf-8-bom", "text-plain", "no-content-type", "charset-latin-1", "content-encoding-gzip"],
)
async def test_a_body_with_another_reading_is_refused(
    stack: SecurityStack, body: bytes, headers: list[tuple[str, str]], expected: tuple[int, str]
) -> None:
    status, _, answer = await raw_http(
        stack, http_request("POST", "/v1/access-checks", [("authorization", f"Bearer {stack.token()}"), *headers], body)
    )
    assert (status, reason_of(answer)) == expected


async def test_a_json_body_declared_in_any_case_with_charset_utf8_is_read(stack: SecurityStack) -> None:
    status, _, answer = await raw_http(
        stack,
        http_request(
            "POST",
            "/v1/access-checks",
            [("authorization", f"Bearer {stack.token()}"), ("content-type", 'Application/JSON; Charset="UTF-8"')],
            CHECK.encode(),
        ),
    )
    assert status == 200, answer[:200]


async def test_strict_json_reads_bytes_as_utf8_without_a_bom_only() -> None:
    assert loads_strict('{"a": "é"}'.encode()) == {"a": "é"}
    for raw in ('{"a": 1}'.encode("utf-16"), '{"a": 1}'.encode("utf-32"), b'\xef\xbb\xbf{"a": 1}', b'{"a": "\xff"}'):
        with pytest.raises(StrictJsonError):
            loads_strict(raw)


@pytest.mark.parametrize(
    "body",
    [b"[" * 30000, b'{"nationalId": "1991062434054", "nationalId": "1997123078000"}'],
    ids=["deep", "duplicated-key"],
)
async def test_the_demo_citizen_token_route_reads_json_strictly(stack: SecurityStack, body: bytes) -> None:
    async with demo_sign_in(stack) as client:
        answer = await client.post("/v1/demo/citizen-token", content=body, headers={"content-type": "application/json"})
    assert (answer.status_code, answer.json()["reason"]) == (400, "INVALID_ARGUMENT")


async def test_the_demo_citizen_token_route_refuses_another_media_type(stack: SecurityStack) -> None:
    async with demo_sign_in(stack) as client:
        refused = await client.post(
            "/v1/demo/citizen-token",
            content=json.dumps({"nationalId": person(stack)}),
            headers={"content-type": "text/plain"},
        )
        served = await client.post("/v1/demo/citizen-token", json={"nationalId": person(stack)})
    assert (refused.status_code, refused.json()["reason"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert served.status_code == 200 and served.json()["token"]


# --- 9. query parameters of hand-written routes --------------------------------------------------


@pytest.mark.parametrize(
    "query", ["format=json&format=csv", "format=csv&until=2030-01-01&until=2031-01-01", "fromat=csv"]
)
async def test_the_export_refuses_repeated_or_undeclared_query_parameters(stack: SecurityStack, query: str) -> None:
    answer = await stack.rest.get(
        f"/v1/me/accesses/export?{query}", headers={"authorization": f"Bearer {citizen(stack)}"}
    )
    assert (answer.status_code, answer.json()["reason"]) == (400, "INVALID_ARGUMENT")


# --- 6-7. gRPC messages: size in the error model; compression as ADR 0007 says ---------------------


def oversized_get_person(nid: str, n: int = 100_000) -> bytes:
    """A GetPersonRequest with an unknown field 99 of ``n`` bytes: over 64 KiB, under the 1 MiB ceiling."""
    length = bytes([0x80 | (n & 0x7F), 0x80 | ((n >> 7) & 0x7F), n >> 14])
    request: bytes = population_pb2.GetPersonRequest(national_id=nid).SerializeToString()
    return request + b"\x9a\x06" + length + b"a" * n


async def test_an_oversized_grpc_message_is_request_too_large_like_rest(stack: SecurityStack) -> None:
    code, reason, _ = await grpc_raw(stack, GET_PERSON, oversized_get_person(person(stack)), agency(stack))
    answer = await stack.rest.post(
        "/v1/access-checks",
        content=b" " * 100_000,
        headers={"authorization": f"Bearer {stack.token()}", "content-type": "application/json"},
    )
    assert (code, reason) == ("RESOURCE_EXHAUSTED", "REQUEST_TOO_LARGE")
    assert (answer.status_code, answer.json()["reason"]) == (413, "REQUEST_TOO_LARGE")


@pytest.mark.parametrize("method", [LIST_ACCESSES, "/grpc.health.v1.Health/Check", "/no.Such/Method"])
async def test_every_grpc_method_answers_an_oversized_message_in_the_error_model(
    stack: SecurityStack, method: str
) -> None:
    code, reason, _ = await grpc_raw(stack, method, b"\x9a\x06" + bytes([0xA0, 0x8D, 0x06]) + b"a" * 100_000)
    assert (code, reason) == ("RESOURCE_EXHAUSTED", "REQUEST_TOO_LARGE")


async def test_a_compressed_grpc_request_is_refused_before_inflation_as_adr_0007_documents(
    stack: SecurityStack,
) -> None:
    """grpcio refuses it itself (UNIMPLEMENTED, no ErrorInfo): the encoding never reaches our code.
    If a grpcio release lets an interceptor see ``grpc-encoding``, this test tells us to revisit ADR 0007."""
    raw = population_pb2.GetPersonRequest(national_id=person(stack)).SerializeToString()
    refused = await grpc_raw(stack, GET_PERSON, raw, agency(stack), compression=grpc.Compression.Gzip)
    served = await grpc_raw(stack, GET_PERSON, raw, agency(stack))
    assert refused == ("UNIMPLEMENTED", "", {})
    assert served[0] == "OK"


# --- 10-11, 17. HTTP framing --------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        b"FOO /v1/catalogue HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /v1/catalogue HTTP/1.1\r\nHost: x\r\nConnection: close\r\nx-purpose: student-\r\n aid\r\n\r\n",
        b"GET /v1/catalogue HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["unknown-method", "obs-fold", "two-content-lengths"],
)
async def test_malformed_http_is_refused_by_the_parser_as_docs_security_says(
    stack: SecurityStack, request_: bytes
) -> None:
    """uvicorn/httptools answers 400 text/plain before our code runs (documented in docs/security.md)."""
    status, headers, _ = await raw_http(stack, request_)
    assert status == 400
    assert headers.get("content-type", "").startswith(("text/plain", "application/problem+json"))


async def test_a_content_length_with_trailing_whitespace_is_its_number(stack: SecurityStack) -> None:
    body = CHECK.encode()
    status, _, answer = await raw_http(
        stack,
        (
            "POST /v1/access-checks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Authorization: Bearer {stack.token()}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)} \r\n\r\n"
        ).encode()
        + body,
    )
    assert status == 200, answer[:200]


async def test_a_get_with_a_body_is_refused(stack: SecurityStack) -> None:
    status, _, answer = await raw_http(
        stack, http_request("GET", "/v1/catalogue", [("authorization", f"Bearer {stack.token()}")], b'{"a": 1}')
    )
    assert (status, reason_of(answer)) == (400, "INVALID_ARGUMENT")


async def test_a_transfer_coding_other_than_chunked_is_refused(stack: SecurityStack) -> None:
    status, _, answer = await raw_http(
        stack,
        (
            "POST /v1/access-checks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Authorization: Bearer {stack.token()}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        ).encode(),
    )
    assert (status, reason_of(answer)) == (400, "INVALID_ARGUMENT")


# --- 12. refusals carry the same facts on both doors -----------------------------------------------


async def test_the_rest_problem_carries_the_grpc_error_info_metadata(stack: SecurityStack) -> None:
    token = stack.token(exp="soon")
    answer = await stack.rest.get(
        f"/v1/population/persons/{person(stack)}",
        headers={"authorization": f"Bearer {token}", "x-purpose": "student-aid"},
    )
    raw = population_pb2.GetPersonRequest(national_id=person(stack)).SerializeToString()
    code, reason, metadata = await grpc_raw(
        stack, GET_PERSON, raw, [("authorization", f"Bearer {token}"), ("x-purpose", "student-aid")]
    )
    problem = answer.json()
    assert (answer.status_code, problem["reason"], problem["metadata"]) == (
        401,
        "TOKEN_CLAIM_INVALID",
        {"claim": "exp"},
    )
    assert (code, reason, metadata) == ("UNAUTHENTICATED", "TOKEN_CLAIM_INVALID", {"claim": "exp"})


# --- 14-15. one spelling and one kind of access token -----------------------------------------------


def respelt(token: str) -> list[str]:
    """The same token spelt otherwise: padded signature, padded payload, unused bits set in the last character."""
    header, payload, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(signature[-1]) | 1]  # ES256 signatures: 64 bytes, 2 spare bits at the end
    return [token + "==", f"{header}.{payload}=.{signature}", f"{header}.{payload}.{signature[:-1]}{last}"]


async def test_an_access_token_spelt_another_way_is_refused_on_both_doors(stack: SecurityStack) -> None:
    raw = population_pb2.GetPersonRequest(national_id=person(stack)).SerializeToString()
    for token in respelt(stack.token()):
        assert token != stack.token()
        answer = await stack.rest.get(
            f"/v1/population/persons/{person(stack)}",
            headers={"authorization": f"Bearer {token}", "x-purpose": "student-aid"},
        )
        code, reason, _ = await grpc_raw(
            stack, GET_PERSON, raw, [("authorization", f"Bearer {token}"), ("x-purpose", "student-aid")]
        )
        assert (answer.status_code, answer.json()["reason"]) == (401, "TOKEN_MALFORMED"), token[-6:]
        assert (code, reason) == ("UNAUTHENTICATED", "TOKEN_MALFORMED")


async def test_a_dpop_proof_spelt_another_way_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from gateway.core.dpop import check_proof, make_proof
    from gateway.core.errors import GatewayError

    key = ec.generate_private_key(ec.SECP256R1())
    url = "http://127.0.0.1:8080/v1/catalogue"
    proof = make_proof(key, "GET", url, "tok", now=1000.0)
    check_proof(proof, method="GET", url=url, access_token="tok", now=1000.0, max_age_s=60, leeway_s=30)
    with pytest.raises(GatewayError) as refused:
        check_proof(proof + "==", method="GET", url=url, access_token="tok", now=1000.0, max_age_s=60, leeway_s=30)
    assert refused.value.reason is Reason.DPOP_PROOF_INVALID


@pytest.mark.parametrize(
    "header",
    [{"typ": "dpop+jwt"}, {"typ": "JWT", "cty": "JWT"}, {"typ": "id+jwt"}],
    ids=["typ-dpop", "cty", "typ-other"],
)
async def test_a_jwt_that_is_not_an_access_token_is_refused(stack: SecurityStack, header: dict[str, str]) -> None:
    import jwt

    private, kid = stack.signing_key()
    token = jwt.encode(stack.claims(), private, algorithm="ES256", headers={"kid": kid, **header})
    answer = await stack.rest.get(
        f"/v1/population/persons/{person(stack)}",
        headers={"authorization": f"Bearer {token}", "x-purpose": "student-aid"},
    )
    assert (answer.status_code, answer.json()["reason"]) == (401, "TOKEN_INVALID")


async def test_access_tokens_typed_at_jwt_or_jwt_are_accepted(stack: SecurityStack) -> None:
    import jwt

    private, kid = stack.signing_key()
    for typ in ("at+jwt", "JWT", "application/at+jwt"):
        token = jwt.encode(stack.claims(), private, algorithm="ES256", headers={"kid": kid, "typ": typ})
        answer = await stack.rest.get(
            f"/v1/population/persons/{person(stack)}",
            headers={"authorization": f"Bearer {token}", "x-purpose": "student-aid"},
        )
        assert answer.status_code == 200, (typ, answer.text[:200])


# --- 16. x-request-id: refused like the other caller ids, answered with a safe id --------------------


@pytest.mark.parametrize("path", ["/v1/population/persons/{nid}", "/v1/catalogue"], ids=["exchange", "service"])
async def test_a_malformed_request_id_is_refused_and_a_safe_id_echoed_on_rest(stack: SecurityStack, path: str) -> None:
    bad = "<script>"
    answer = await stack.rest.get(
        path.format(nid=person(stack)),
        headers={"authorization": f"Bearer {stack.token()}", "x-purpose": "student-aid", "x-request-id": bad},
    )
    problem = answer.json()
    assert (answer.status_code, problem["reason"], problem["field"]) == (400, "CALLER_FIELD_INVALID", "x-request-id")
    assert answer.headers["x-request-id"] == problem["requestId"] != bad
    assert len(problem["requestId"]) == 32


@pytest.mark.parametrize(
    "method", [GET_PERSON, "/passerelle.gateway.v1.ServiceCatalogue/ListServices"], ids=["exchange", "service"]
)
async def test_a_malformed_request_id_is_refused_and_a_safe_id_echoed_on_grpc(
    stack: SecurityStack, method: str
) -> None:
    raw = (
        population_pb2.GetPersonRequest(national_id=person(stack)).SerializeToString() if method == GET_PERSON else b""
    )
    try:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = stack.channel.unary_unary(method)
        await call(
            raw, metadata=(*agency(stack), ("x-request-id", "has space")), timeout=10
        )
        raise AssertionError("served")
    except grpc.aio.AioRpcError as exc:
        info = error_info(exc)
        echoed = next((v for k, v in exc.trailing_metadata() or () if k == "x-request-id"), "")
    assert info is not None and (info.reason, info.metadata["field"]) == ("CALLER_FIELD_INVALID", "x-request-id")
    assert echoed and echoed != "has space"


async def test_a_valid_request_id_is_echoed_as_given(stack: SecurityStack) -> None:
    answer = await stack.rest.get(
        "/v1/catalogue", headers={"authorization": f"Bearer {stack.token()}", "x-request-id": "case-42.a"}
    )
    assert (answer.status_code, answer.headers["x-request-id"]) == (200, "case-42.a")


# --- 17. DPoP on gRPC, binary variants of headers ---------------------------------------------------


async def test_a_dpop_bound_token_is_refused_on_grpc_with_a_clear_reason(stack: SecurityStack) -> None:
    token = stack.token(cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
    raw = population_pb2.GetPersonRequest(national_id=person(stack)).SerializeToString()
    code, reason, _ = await grpc_raw(
        stack, GET_PERSON, raw, [("authorization", f"DPoP {token}"), ("x-purpose", "student-aid"), ("dpop", "a.b.c")]
    )
    assert (code, reason) == ("UNAUTHENTICATED", "SENDER_CONSTRAINT_FAILED")


async def test_a_binary_variant_beside_a_header_is_refused_alike_on_both_doors(stack: SecurityStack) -> None:
    raw = population_pb2.GetPersonRequest(national_id=person(stack)).SerializeToString()
    code, reason, _ = await grpc_raw(stack, GET_PERSON, raw, [*agency(stack), ("x-purpose-bin", b"other")])  # type: ignore[list-item]
    answer = await stack.rest.get(
        f"/v1/population/persons/{person(stack)}", headers=[*agency(stack), ("x-purpose-bin", "b3RoZXI=")]
    )
    assert (code, reason) == ("INVALID_ARGUMENT", "DUPLICATE_HEADER")
    assert (answer.status_code, answer.json()["reason"]) == (400, "DUPLICATE_HEADER")
