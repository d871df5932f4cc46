"""The lean registry route answers exactly what FastAPI's route answered, byte for byte.

One gateway, two REST doors on it: the one ``start_gateway`` runs (registry exchanges served by
``rest_lean.LeanRegistryRoutes``) and the same application built with ``lean_routes=False``
(every request through FastAPI's router, endpoint and exception handlers), both under uvicorn
as the gateway runs it. Each request of the corpus is written to both as raw bytes (so hostile
paths, queries and headers arrive as sent); status line, headers (but ``date``) and body must
be identical once the per-call request ids are masked, and the audit records of the two calls
must agree field by field.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.dpop import key_thumbprint, make_proof
from gateway.core.ports import AuditQuery
from gateway.entrypoints.server import bind_socket, rest_app, rest_server
from tests.security.conftest import SecurityStack

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: Audit fields that must agree between the two doors (time, latency and ids are per call).
AUDITED = ("consumer", "service", "purpose", "legal_basis", "subject", "consent_id", "case_id", "officer_id",
           "fields", "outcome", "reason", "ai_system", "protocol")
_FRESH_ID = re.compile(rb"[0-9a-f]{32}")


@dataclass(frozen=True)
class Door:
    name: str           # "lean" | "full" (same length: the ids masked have the same size)
    port: int


@dataclass(frozen=True)
class Probe:
    name: str
    target: str                                   # request target as sent (str of Latin-1 bytes)
    method: str = "GET"
    headers: Callable[[SecurityStack, Door, str], list[tuple[str, str]]] | None = None
    body: bytes = b""
    extra: list[tuple[str, str]] = field(default_factory=list)   # raw headers added as they are
    absolute: bool = False                        # the target in absolute form (http://host:port/path)


@dataclass(frozen=True)
class Answer:
    status_line: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


def person(s: SecurityStack, n: int = 0) -> str:
    return s.data.households[n].members[0]


def caller(
    purpose: str = "student-aid", *, token: str = "cedies", request_id: str = "", **more: str
) -> Callable[..., Any]:
    """Headers of a consumer's call (``token``: a consumer, "", "junk" or "basic"; ``request_id``: instead of
    the door's own)."""

    def headers(s: SecurityStack, door: Door, rid: str) -> list[tuple[str, str]]:
        auth = {"": "", "junk": "Bearer not.a.token", "basic": "Basic Y2VkaWVzOnB3"}.get(token)
        out = [("authorization", auth if auth is not None else f"Bearer {s.token(token)}")]
        out += [("x-purpose", purpose), ("x-request-id", request_id or rid), *more.items()]
        return [(k.replace("_", "-"), v) for k, v in out if v]

    return headers


def dpop(*, url_of: Callable[[Door, str], str], method: str = "GET") -> Callable[..., Any]:
    """A DPoP-bound token with a proof for ``url_of(door, path)`` (each door has its own address)."""

    def headers(s: SecurityStack, door: Door, rid: str) -> list[tuple[str, str]]:
        key = ec.generate_private_key(ec.SECP256R1())
        token = s.token(cnf={"jkt": key_thumbprint(key)})
        proof = make_proof(key, method, url_of(door, f"/v1/population/persons/{person(s)}"), token)
        return [("authorization", f"DPoP {token}"), ("dpop", proof), ("x-purpose", "student-aid"),
                ("x-request-id", rid)]

    return headers


def corpus(s: SecurityStack) -> list[Probe]:
    nid, other = person(s), person(s, 1)
    persons, income = f"/v1/population/persons/{nid}", f"/v1/tax/income-certificates/{nid}/2024"
    ok = caller()
    own = lambda door, path: f"http://127.0.0.1:{door.port}{path}"   # noqa: E731
    return [
        Probe("valid person", persons, headers=ok),
        Probe("valid person, another", f"/v1/population/persons/{other}", headers=ok),
        Probe("valid income certificate", income, headers=ok),
        Probe("x-fields", persons, headers=caller(x_fields="familyName,givenNames")),
        Probe("fields in the query", f"{persons}?fields=familyName", headers=ok),
        Probe("fields empty", f"{persons}?fields=", headers=ok),
        Probe("fields twice", f"{persons}?fields=familyName&fields=givenNames", headers=ok),
        Probe("fields and x-fields", f"{persons}?fields=familyName", headers=caller(x_fields="familyName")),
        Probe("fields percent-encoded name", f"{persons}?f%69elds=familyName", headers=ok),
        Probe("fields unknown field", f"{persons}?fields=noSuchField", headers=ok),
        Probe("fields without =", f"{persons}?fields", headers=ok),
        Probe("unknown query parameter", f"{persons}?foo=1", headers=ok),
        Probe("query names the path variable", f"{persons}?national_id={other}", headers=ok),
        Probe("query names it in JSON", f"{persons}?nationalId={nid}", headers=ok),
        Probe("query sets a path number", f"{income}?fiscal_year=2023", headers=ok),
        Probe("bad percent in query", f"{persons}?fields=%ZZ", headers=ok),
        Probe("non-UTF-8 percent in query", f"{persons}?fields=%FF", headers=ok),
        Probe("semicolon query", f"{persons}?fields=familyName;x=1", headers=ok),
        Probe("empty query", f"{persons}?", headers=ok),
        Probe("ampersands only", f"{persons}?&&", headers=ok),
        Probe("invalid id", "/v1/population/persons/123", headers=ok),
        Probe("letters id", "/v1/population/persons/ABCDEFGHIJKLM", headers=ok),
        Probe("Arabic-Indic digits", "/v1/population/persons/%D9%A1%D9%A2%D9%A3", headers=ok),
        Probe("raw non-ASCII id", "/v1/population/persons/" + "é".encode().decode("latin-1"), headers=ok),
        Probe("percent-encoded slash", f"/v1/population/persons/{nid[:5]}%2F{nid[5:]}", headers=ok),
        Probe("percent-encoded slash at end", f"/v1/population/persons/{nid}%2F", headers=ok),
        Probe("percent-encoded NUL", f"/v1/population/persons/{nid}%00", headers=ok),
        Probe("percent-encoded newline", f"/v1/population/persons/{nid}%0A", headers=ok),
        Probe("percent-encoded digits", "/v1/population/persons/" + "".join(f"%{ord(c):02X}" for c in nid),
              headers=ok),
        Probe("bad percent in path", "/v1/population/persons/%ZZ", headers=ok),
        Probe("trailing slash", f"{persons}/", headers=ok),
        Probe("double slash", f"/v1/population//persons/{nid}", headers=ok),
        Probe("upper-case prefix", f"/V1/population/persons/{nid}", headers=ok),
        Probe("no id", "/v1/population/persons/", headers=ok),
        Probe("dot segment", f"/v1/population/persons/../persons/{nid}", headers=ok),
        Probe("very long id", "/v1/population/persons/" + "1" * 3000, headers=ok),
        Probe("fiscal year decimal", f"/v1/tax/income-certificates/{nid}/2024.0", headers=ok),
        Probe("fiscal year plus", f"/v1/tax/income-certificates/{nid}/+2024", headers=ok),
        Probe("fiscal year huge", f"/v1/tax/income-certificates/{nid}/99999999999999999999999", headers=ok),
        Probe("fiscal year non-ASCII", f"/v1/tax/income-certificates/{nid}/%D9%A2%D9%A0%D9%A2%D9%A4", headers=ok),
        Probe("unknown purpose", persons, headers=caller("no-such-purpose")),
        Probe("no purpose", persons, headers=caller("")),
        Probe("refused consumer", persons, headers=caller(token="sandbox")),
        Probe("no token", persons, headers=caller(token="")),
        Probe("junk token", persons, headers=caller(token="junk")),
        Probe("basic scheme", persons, headers=caller(token="basic")),
        Probe("bad request id", persons, headers=caller(request_id="a b")),
        Probe("non-ASCII request id", persons, headers=caller(request_id="r\xe9q")),
        Probe("case id with spaces", persons, headers=caller(x_case_id="a b")),
        Probe("ai system", persons, headers=caller(x_ai_system="eu-ai-db.cedies-eligibility-1")),
        Probe("unknown ai system", persons, headers=caller(x_ai_system="nope")),
        Probe("traceparent twice", persons, headers=ok,
              extra=[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                     ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]),
        Probe("x-purpose twice", persons, headers=ok, extra=[("x-purpose", "student-aid")]),
        Probe("x-purpose-bin beside x-purpose", persons, headers=ok, extra=[("x-purpose-bin", "c3R1ZGVudC1haWQ=")]),
        Probe("obs-text header", persons, headers=ok, extra=[("x-officer-id", "\xe9t\xe9")]),
        Probe("oversized header", persons, headers=ok, extra=[("x-padding", "p" * 20_000)]),
        Probe("GET with a body", persons, headers=ok, body=b"{}",
              extra=[("content-type", "application/json"), ("content-length", "2")]),
        Probe("GET chunked", persons, headers=ok, body=b"2\r\n{}\r\n0\r\n\r\n",
              extra=[("transfer-encoding", "chunked")]),
        Probe("bad content-length", persons, headers=ok, extra=[("content-length", "1x")]),
        Probe("HEAD", persons, method="HEAD", headers=ok),
        Probe("POST", persons, method="POST", headers=ok, body=b"{}",
              extra=[("content-type", "application/json"), ("content-length", "2")]),
        Probe("PUT", persons, method="PUT", headers=ok, extra=[("content-length", "0")]),
        Probe("DELETE", persons, method="DELETE", headers=ok),
        Probe("OPTIONS", persons, method="OPTIONS", headers=ok),
        Probe("PATCH", income, method="PATCH", headers=ok, extra=[("content-length", "0")]),
        Probe("lower-case method", persons, method="get", headers=ok),
        Probe("DPoP with a fresh proof", persons, headers=dpop(url_of=own)),
        Probe("DPoP proof for the Host header", persons, headers=dpop(url_of=lambda d, p: f"http://evil.example{p}"),
              extra=[("host", "evil.example")]),
        Probe("DPoP proof for another method", persons, headers=dpop(url_of=own, method="POST")),
        Probe("path parameter after a semicolon", f"{persons};jsessionid=1", headers=ok),
        Probe("percent-encoded space at end", f"{persons}%20", headers=ok),
        Probe("plus in the field mask", f"{persons}?fields=family+Name", headers=ok),
        Probe("percent-encoded comma in the field mask", f"{persons}?fields=familyName%2CgivenNames", headers=ok),
        Probe("absolute-form target", persons, headers=ok, absolute=True),
        Probe("mixed-case header names", persons, headers=lambda s, d, rid: [
            ("Authorization", f"Bearer {s.token('cedies')}"), ("X-Purpose", "student-aid"), ("X-Request-Id", rid)]),
        Probe("authorization twice, the second junk", persons, headers=ok,
              extra=[("authorization", "Bearer not.a.token")]),
        Probe("x-fields twice", persons, headers=caller(x_fields="familyName"), extra=[("x-fields", "givenNames")]),
        Probe("tab inside a header value", persons, headers=ok, extra=[("x-case-id", "a\tb")]),
        Probe("expect 100-continue", persons, headers=ok, extra=[("expect", "100-continue")]),
        Probe("openapi document", "/openapi.json"),
        Probe("health", "/healthz"),
        Probe("purposes (a gateway service)", "/v1/purposes", headers=ok),
    ]


async def exchange(door: Door, probe: Probe, lines: list[tuple[str, str]]) -> Answer:
    """Write the request as raw bytes on a fresh connection; read the whole answer."""
    target = f"http://127.0.0.1:{door.port}{probe.target}" if probe.absolute else probe.target
    head = [f"{probe.method} {target} HTTP/1.1"]
    if not any(k == "host" for k, _ in probe.extra):
        head.append(f"host: 127.0.0.1:{door.port}")
    head += [f"{k}: {v}" for k, v in [*lines, *probe.extra]] + ["connection: close"]
    reader, writer = await asyncio.open_connection("127.0.0.1", door.port)
    try:
        writer.write("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + probe.body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    top, _, body = raw.partition(b"\r\n\r\n")
    status, *header_lines = top.split(b"\r\n")
    headers = [(k.strip().lower(), v.strip()) for k, _, v in (h.partition(b":") for h in header_lines)]
    return Answer(status, [(k, v) for k, v in headers if k != b"date"], body)


def masked(answer: Answer, rid: str) -> Answer:
    """Request ids are per call: the one the probe gave, and fresh ones (32 hex digits)."""
    def mask(b: bytes) -> bytes:
        return _FRESH_ID.sub(b"<id>", b.replace(rid.encode(), b"<rid>"))

    return Answer(answer.status_line, [(k, mask(v)) for k, v in answer.headers], mask(answer.body))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def doors(stack: SecurityStack) -> AsyncIterator[tuple[Door, Door]]:
    """The gateway's own REST door (lean) and the same application without the lean route."""
    server = rest_server(rest_app(stack.running.gateway, lean_routes=False))
    sock = bind_socket("127.0.0.1", 0)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), "the comparison door did not start"
        await asyncio.sleep(0.005)
    try:
        yield Door("lean", stack.running.rest_port), Door("full", sock.getsockname()[1])
    finally:
        server.should_exit = True
        await task


async def audit_of(s: SecurityStack, after_seq: int) -> dict[str, dict[str, Any]]:
    stored = await s.running.gateway.audit.query(AuditQuery(after_seq=after_seq, limit=10_000))
    return {r.record.request_id: {k: getattr(r.record, k) for k in AUDITED} for r in stored}


async def last_seq(s: SecurityStack) -> int:
    stored = await s.running.gateway.audit.query(AuditQuery(limit=100_000))
    return max((r.seq for r in stored), default=0)


async def test_the_lean_route_answers_what_fastapi_answered(
    stack: SecurityStack, doors: tuple[Door, Door]
) -> None:
    start = await last_seq(stack)
    statuses: set[bytes] = set()
    for n, probe in enumerate(corpus(stack)):
        answers = []
        for door in doors:
            rid = f"{door.name}-{n}"
            lines = probe.headers(stack, door, rid) if probe.headers else []
            answers.append(masked(await exchange(door, probe, lines), rid))
        lean, fastapi = answers
        assert lean == fastapi, probe.name
        statuses.add(lean.status_line)
    records = await audit_of(stack, start)
    compared = [n for n in range(len(corpus(stack))) if f"lean-{n}" in records or f"full-{n}" in records]
    for n in compared:
        assert records.get(f"lean-{n}") == records.get(f"full-{n}"), corpus(stack)[n].name
    assert len(compared) >= 20, "too few probes reached the audit log"
    assert {b"HTTP/1.1 200 OK", b"HTTP/1.1 400 Bad Request", b"HTTP/1.1 401 Unauthorized",
            b"HTTP/1.1 404 Not Found", b"HTTP/1.1 405 Method Not Allowed"} <= statuses, statuses


async def test_both_doors_publish_the_same_openapi_document(stack: SecurityStack) -> None:
    lean, fastapi = rest_app(stack.running.gateway), rest_app(stack.running.gateway, lean_routes=False)
    document = lean.openapi()
    assert document == fastapi.openapi()
    assert "/v1/population/persons/{national_id}" in document["paths"]
