"""One request, one meaning (issue 11): each example of the issue, on both doors.

Each test names the example it pins down. A request is either read one way, the
same on gRPC and on REST, or refused with a reason code of the error model.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import pytest
import pytest_asyncio
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from adapters.registries.grpc_registry import GrpcRegistryAdapter
from gateway._pb.passerelle.gateway.v1 import audit_pb2
from gateway._pb.registry.population.v1 import population_pb2
from gateway.core.pipeline import Registry
from gateway.core.ports import RegistryAdapter
from gateway.core.proto_typing import json_name
from gateway.demo.setup import demo_token
from tests.security.conftest import SecurityStack

pytestmark = pytest.mark.asyncio(loop_scope="module")

GET_PERSON = "registry.population.v1.PopulationRegistry/GetPerson"
PROOF = "/passerelle.gateway.v1.CitizenAccesses/GetMyAccessProof"


def person(s: SecurityStack) -> str:
    return s.data.households[0].members[0]


def rest_headers(s: SecurityStack, consumer: str = "cedies") -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {s.token(consumer)}"), ("x-purpose", "student-aid")]


def grpc_reason(exc: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(cast(grpc.Call, exc))  # an AioRpcError has the trailers, code and details it reads
    if status is None:
        return ""
    info = error_details_pb2.ErrorInfo()
    for detail in status.details:
        if detail.Unpack(info):
            return str(info.reason)
    return ""


async def grpc_raw(
    s: SecurityStack, method: str, raw: bytes, metadata: Sequence[tuple[str, str]]
) -> tuple[str, str, bytes]:
    """(status name, reason, raw answer) of one unary call with raw bytes."""
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = s.channel.unary_unary(method)
    try:
        answer = await call(raw, metadata=tuple(metadata), timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, grpc_reason(exc), b""
    return "OK", "", answer


@dataclass
class RecordingRegistry:
    """Wraps the population registry's adapter, keeping the serialised requests that reach it."""

    inner: RegistryAdapter
    seen: list[bytes] = field(default_factory=list)

    async def call(self, method: str, request: Message, *, timeout: float, metadata: Any) -> Message:
        self.seen.append(request.SerializeToString())
        return await self.inner.call(method, request, timeout=timeout, metadata=metadata)

    async def close(self) -> None:
        return None


@pytest_asyncio.fixture(loop_scope="module")
async def recording(stack: SecurityStack) -> AsyncIterator[RecordingRegistry]:
    registries = stack.running.gateway.registries
    service = GET_PERSON.split("/")[0]
    original = registries[service]
    recorder = RecordingRegistry(original.adapter)
    registries[service] = Registry(original.id, recorder, original.timeout_s)
    try:
        yield recorder
    finally:
        registries[service] = original


# --- 1. unknown protobuf fields --------------------------------------------------------------------

#: Field 4242, length-delimited, "smuggled": a tag no version of our contract knows.
UNKNOWN_FIELD = b"\x92\x89\x02\x08smuggled"


async def test_an_unknown_field_appended_to_a_request_does_not_reach_the_registry(
    stack: SecurityStack, recording: RecordingRegistry
) -> None:
    raw = population_pb2.GetPersonRequest(national_id=person(stack)).SerializeToString() + UNKNOWN_FIELD
    code, _, answer = await grpc_raw(stack, f"/{GET_PERSON}", raw, rest_headers(stack))
    assert code == "OK" and answer
    assert recording.seen and all(b"smuggled" not in seen for seen in recording.seen)


@pytest_asyncio.fixture(loop_scope="module")
async def newer_registry(stack: SecurityStack) -> AsyncIterator[str]:
    """A population registry whose contract is newer: its answers carry a field ours does not know."""
    nid = person(stack)
    answer = population_pb2.Person(national_id=nid, given_names="Ann", family_name="Newer")

    async def get_person(raw: bytes, context: Any) -> bytes:
        raw_answer: bytes = answer.SerializeToString() + UNKNOWN_FIELD
        return raw_answer

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])   # port 0 with reuseport may be shared
    handler = grpc.method_handlers_generic_handler(
        "registry.population.v1.PopulationRegistry", {"GetPerson": grpc.unary_unary_rpc_method_handler(get_person)}
    )
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    gateway = stack.running.gateway
    service = GET_PERSON.split("/")[0]
    original = gateway.registries[service]
    ops = {op.method: op for op in gateway.operations.values() if op.service == service}
    adapter = GrpcRegistryAdapter(f"127.0.0.1:{port}", ops)
    gateway.registries[service] = Registry(original.id, adapter, original.timeout_s)
    try:
        yield nid
    finally:
        gateway.registries[service] = original
        await adapter.close()
        await server.stop(0)


async def test_a_field_unknown_to_our_contract_leaves_by_neither_door(
    stack: SecurityStack, newer_registry: str
) -> None:
    raw = population_pb2.GetPersonRequest(national_id=newer_registry).SerializeToString()
    code, reason, answer = await grpc_raw(stack, f"/{GET_PERSON}", raw, rest_headers(stack))
    assert code == "OK", reason
    assert b"smuggled" not in answer
    assert population_pb2.Person.FromString(answer).family_name == "Newer"
    r = await stack.rest.get(f"/v1/population/persons/{newer_registry}", headers=rest_headers(stack))
    assert r.status_code == 200 and "smuggled" not in r.text
    grpc_fields = {json_name(fd) for fd, _ in population_pb2.Person.FromString(answer).ListFields()}
    assert grpc_fields == set(r.json())


# --- 2. canonical REST mapping ----------------------------------------------------------------------


@pytest.mark.parametrize("param", ["national_id", "nationalId"])
async def test_a_query_parameter_cannot_override_the_path(
    stack: SecurityStack, recording: RecordingRegistry, param: str
) -> None:
    other = stack.data.households[1].members[0]
    before = len(recording.seen)
    r = await stack.rest.get(f"/v1/population/persons/{person(stack)}?{param}={other}", headers=rest_headers(stack))
    assert (r.status_code, r.json()["reason"]) == (400, "INVALID_ARGUMENT")
    assert len(recording.seen) == before


async def test_an_undeclared_query_parameter_is_refused(stack: SecurityStack) -> None:
    r = await stack.rest.get(f"/v1/population/persons/{person(stack)}?debug=1", headers=rest_headers(stack))
    assert (r.status_code, r.json()["reason"]) == (400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("year", ["２０２４", "١٢٣٤", "2_024", "+2024", "2024.0", "2e3", " 2024"])
async def test_numbers_in_paths_are_ascii_decimal_only(stack: SecurityStack, year: str) -> None:
    r = await stack.rest.get(f"/v1/tax/income-certificates/{person(stack)}/{year}", headers=rest_headers(stack))
    assert (r.status_code, r.json()["reason"]) == (400, "INVALID_ARGUMENT"), r.text


@pytest.mark.parametrize(
    "body",
    [
        b'{"consumer": "cedies", "consumer": "sandbox", "purpose": "student-aid"}',
        b'{"consumer": "cedies", "purpose": "student-aid", "x": NaN}',
        b'{"consumer": "cedies", "purpose": "student-aid", "x": Infinity}',
        b'{"consumer": "cedies", "purpose": "student-aid", "x": 1e999}',
        b'{"consumer": "cedies", "purpose": "student-aid", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
    ids=["duplicated key", "NaN", "Infinity", "overflow", "over-deep"],
)
async def test_json_bodies_with_more_than_one_meaning_are_refused(stack: SecurityStack, body: bytes) -> None:
    headers = [*rest_headers(stack), ("content-type", "application/json")]
    r = await stack.rest.post("/v1/access-checks", content=body, headers=headers)
    assert (r.status_code, r.json()["reason"]) == (400, "INVALID_ARGUMENT"), r.text


@pytest.mark.parametrize("suffix", ["/", "%2F", "%2f"])
async def test_trailing_and_encoded_slashes_are_a_plain_404_never_a_redirect(
    stack: SecurityStack, suffix: str
) -> None:
    r = await stack.rest.get(f"/v1/population/persons/{person(stack)}{suffix}", headers=rest_headers(stack))
    assert r.status_code == 404 and "location" not in r.headers
    assert r.headers["content-type"] == "application/problem+json"
    r = await stack.rest.get(f"/v1/catalogue{suffix}", headers=rest_headers(stack))
    assert r.status_code == 404 and r.json()["reason"] == "UNKNOWN_SERVICE"


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
async def test_head_and_options_on_a_route_answer_405_with_allow(stack: SecurityStack, method: str) -> None:
    r = await stack.rest.request(method, f"/v1/population/persons/{person(stack)}", headers=rest_headers(stack))
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    if method == "OPTIONS":
        assert r.json()["reason"] == "METHOD_NOT_ALLOWED"


# --- 3. single-valued headers ----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["authorization", "x-purpose", "x-fields", "x-consent-id", "x-request-id", "dpop"])
async def test_a_repeated_single_valued_header_is_refused_alike_on_both_doors(
    stack: SecurityStack, recording: RecordingRegistry, key: str
) -> None:
    values = {"authorization": f"Bearer {stack.token()}", "x-purpose": "student-aid", "x-fields": "familyName",
              "x-consent-id": "c-1", "x-request-id": "r-1", "dpop": "x.y.z"}
    headers = [(k, v) for k, v in rest_headers(stack) if k != key] + [(key, values[key])]
    # The second value differs from the first: the doors would otherwise pick different ones.
    headers.append((key, f"Bearer {stack.token('sandbox')}" if key == "authorization" else values[key] + "-2"))
    before = len(recording.seen)
    r = await stack.rest.get(f"/v1/population/persons/{person(stack)}", headers=headers)
    assert (r.status_code, r.json()["reason"]) == (400, "DUPLICATE_HEADER")
    raw = population_pb2.GetPersonRequest(national_id=person(stack)).SerializeToString()
    assert await grpc_raw(stack, f"/{GET_PERSON}", raw, headers) == ("INVALID_ARGUMENT", "DUPLICATE_HEADER", b"")
    assert len(recording.seen) == before


# --- 4. body limits whatever the framing ----------------------------------------------------------


async def _chunked_post(port: int, path: str, total: int, chunk: int = 16 * 1024) -> tuple[bytes, int]:
    """POST ``total`` bytes with Transfer-Encoding: chunked and no token; (response, bytes sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 "transfer-encoding: chunked\r\n\r\n".encode())
    sent = 0
    piece = f"{chunk:x}\r\n".encode() + b" " * chunk + b"\r\n"
    try:
        while sent < total:
            writer.write(piece)
            await writer.drain()
            sent += chunk
            if reader.at_eof() or len(reader._buffer) > 0:  # type: ignore[attr-defined]
                break
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    response = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    return response, sent


async def test_a_chunked_body_over_the_limit_is_refused_before_it_is_read_whole(stack: SecurityStack) -> None:
    response, sent = await _chunked_post(stack.running.rest_port, "/v1/access-checks", 32 * 1024 * 1024)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(body[body.index(b"{"):body.rindex(b"}") + 1])["reason"] == "REQUEST_TOO_LARGE"
    assert sent < 8 * 1024 * 1024     # refused long before the 32 MB were sent


def _bomb_client(target: str, method: str, token: str) -> str:
    code = f"""
import grpc
ch = grpc.insecure_channel({target!r}, compression=grpc.Compression.Gzip,
                           options=[("grpc.max_send_message_length", 256 * 1024 * 1024)])
try:
    ch.unary_unary({method!r})(b"\\x0a" + b"\\x00" * 60_000_000, timeout=30,
                               metadata=(("authorization", "Bearer {token}"), ("x-purpose", "student-aid")))
    print("OK")
except grpc.RpcError as e:
    print(e.code().name)
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()


async def test_a_small_gzip_bomb_is_refused_and_memory_stays_bounded(stack: SecurityStack) -> None:
    import resource

    assert len(gzip.compress(b"\x00" * 60_000_000)) < 64 * 1024   # small on the wire
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome = await asyncio.to_thread(
        _bomb_client, f"127.0.0.1:{stack.running.grpc_port}", f"/{GET_PERSON}", stack.token()
    )
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert outcome in ("UNIMPLEMENTED", "RESOURCE_EXHAUSTED", "INVALID_ARGUMENT")
    assert grown_mb < 16, f"the gateway grew by {grown_mb:.0f} MB"


# --- 6. crashes instead of answers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proof_id", "status", "reason", "code"),
    [
        ("%C2%B2", 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
        ("99999999999999999999999", 404, "NOT_FOUND", "NOT_FOUND"),
        ("%D9%A1", 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    ],
)
async def test_odd_proof_ids_are_answered_in_the_error_model_on_both_doors(
    stack: SecurityStack, proof_id: str, status: int, reason: str, code: str
) -> None:
    nid = person(stack)
    token = demo_token(stack.data_dir, issuer_id="demo-citizens", subject=nid, scope="citizen")
    r = await stack.rest.get(f"/v1/me/accesses/{proof_id}/proof", headers={"authorization": f"Bearer {token}"})
    assert (r.status_code, r.json()["reason"]) == (status, reason), r.text
    from urllib.parse import unquote

    raw = audit_pb2.GetMyAccessProofRequest(id=unquote(proof_id)).SerializeToString()
    got = await grpc_raw(stack, PROOF, raw, [("authorization", f"Bearer {token}")])
    assert got == (code, reason, b"")


async def test_an_unexpected_exception_is_internal_without_its_text_on_both_doors(stack: SecurityStack) -> None:
    class Broken:
        async def call(self, method: str, request: Message, *, timeout: float, metadata: Any) -> Message:
            raise RuntimeError(f"secret detail {request}")

        async def close(self) -> None:
            return None

    registries = stack.running.gateway.registries
    service = GET_PERSON.split("/")[0]
    original = registries[service]
    registries[service] = Registry(original.id, Broken(), original.timeout_s)
    try:
        r = await stack.rest.get(f"/v1/population/persons/{person(stack)}", headers=rest_headers(stack))
        raw = population_pb2.GetPersonRequest(national_id=person(stack)).SerializeToString()
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = stack.channel.unary_unary(f"/{GET_PERSON}")
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await call(raw, metadata=tuple(rest_headers(stack)), timeout=10)
    finally:
        registries[service] = original
    assert (r.status_code, r.json()["reason"]) == (500, "INTERNAL")
    assert "secret" not in r.text and person(stack) not in r.text
    assert exc.value.code() == grpc.StatusCode.INTERNAL and grpc_reason(exc.value) == "INTERNAL"
    assert "secret" not in (exc.value.details() or "")


async def test_the_server_error_log_is_json_rate_limited_and_never_quotes_the_exception() -> None:
    import logging

    from observability.logs import JsonFormatter, RateLimitedErrorLog

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    handler = Collect()
    logger = logging.getLogger("passerelle.error")
    logger.addHandler(handler)
    try:
        log = RateLimitedErrorLog(rate=0.001, burst=3)
        for _ in range(50):
            try:
                raise ValueError("national id 1991062434054")
            except ValueError as exc:
                log.record(exc, "rest")
    finally:
        logger.removeHandler(handler)
    assert len(lines) == 3 and log.counts == {"rest": 50} and log.suppressed == 47
    entry = json.loads(lines[0])
    assert (entry["error"], entry["door"], entry["level"]) == ("ValueError", "rest", "error")
    assert "1991062434054" not in lines[0]
