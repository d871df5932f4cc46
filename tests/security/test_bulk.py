"""Bulk look-ups (issue 16) on both doors: each item means what a single call means, and is recorded once.

Mixed batches (answered, malformed, invalid, unknown, consent-less items) go to gRPC
``BulkExchange/Lookup`` and to REST ``POST /v1/bulk:lookup``: per item, the status equals the
refusal a single call gets, the answers are equal, and the audit holds one record per item
(marked bulk) with the same contents on both doors. A client that leaves mid-batch stops it: every
item it received has its record, and no item that was not written has one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import grpc
import pytest
from google.protobuf import any_pb2
from google.protobuf.message import Message

from gateway._pb.passerelle.gateway.v1 import bulk_pb2
from gateway._pb.registry.population.v1 import population_pb2
from gateway.application.bulk import BulkLookups, BulkReport
from gateway.core.identifiers import make_national_id
from gateway.core.pipeline import Registry
from gateway.core.ports import AuditQuery
from gateway.core.types import StoredAuditRecord
from gateway.entrypoints.bulk import GRPC_METHOD, item_json
from tests.security.conftest import SecurityStack
from tests.security.test_differential import AUDITED

pytestmark = pytest.mark.asyncio(loop_scope="module")

GET_PERSON = "registry.population.v1.PopulationRegistry/GetPerson"
GET_INCOME = "registry.tax.v1.TaxRegistry/GetIncomeCertificate"
PERSON_REQUEST = "type.googleapis.com/registry.population.v1.GetPersonRequest"
NOT_IN_REGISTER = make_national_id(dt.date(2001, 1, 1), 999)   # valid, and nobody has it in the demo data


def headers(s: SecurityStack, request_id: str, consumer: str = "cedies") -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {s.token(consumer)}"), ("x-purpose", "student-aid"),
            ("x-case-id", "yearly-recalc-2026"), ("x-request-id", request_id)]


def lookups(s: SecurityStack) -> BulkLookups:
    assert s.running.gateway.bulk is not None
    return s.running.gateway.bulk


def reason_of(item: dict[str, Any]) -> str:
    for detail in item["status"].get("details", []):
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return str(detail["reason"])
    return ""


# --- the two doors ---------------------------------------------------------------------------------


async def rest_bulk(
    s: SecurityStack, items: Sequence[Any], hdrs: Sequence[tuple[str, str]], *, method: str = GET_PERSON,
    order: str = "BULK_ORDER_INDEX",
) -> tuple[int, list[dict[str, Any]]]:
    """(HTTP status, the answered items or the problem as one element)."""
    body = {"method": method, "order": order, "items": list(items)}
    async with s.rest.stream("POST", "/v1/bulk:lookup", json=body, headers=list(hdrs)) as r:
        if r.status_code != 200:
            return r.status_code, [json.loads(await r.aread())]
        assert r.headers["content-type"].startswith("application/x-ndjson")
        return 200, [json.loads(line) async for line in r.aiter_lines() if line]


def packed(messages: Sequence[Message | any_pb2.Any]) -> list[any_pb2.Any]:
    out = []
    for m in messages:
        if isinstance(m, any_pb2.Any):
            out.append(m)
        else:
            a = any_pb2.Any()
            a.Pack(m)
            out.append(a)
    return out


async def grpc_bulk(
    s: SecurityStack, items: Sequence[Message | any_pb2.Any], hdrs: Sequence[tuple[str, str]], *,
    method: str = GET_PERSON, order: bulk_pb2.BulkOrder = bulk_pb2.BULK_ORDER_INDEX,
) -> tuple[str, list[dict[str, Any]]]:
    """(status name, the answered items as proto3 JSON, or the refusal's reason)."""
    request = bulk_pb2.BulkLookupRequest(method=method, order=order, items=packed(items))
    call = s.channel.unary_stream(GRPC_METHOD, request_serializer=bulk_pb2.BulkLookupRequest.SerializeToString,
                                  response_deserializer=bulk_pb2.BulkLookupAnswers.FromString)
    out: list[dict[str, Any]] = []
    try:
        async for group in call(request, metadata=tuple(hdrs), timeout=30):
            assert group.items, "an answer group holds at least one item"
            out.extend(item_json(item) for item in group.items)
    except grpc.aio.AioRpcError as exc:
        from tests.security.test_one_meaning import grpc_reason

        return exc.code().name, [{"reason": grpc_reason(exc)}]
    return "OK", out


async def single_reason(s: SecurityStack, national_id: str) -> tuple[str, dict[str, Any] | None]:
    r = await s.rest.get(f"/v1/population/persons/{quote(national_id, safe='')}", headers=headers(s, "single"))
    return ("", r.json()) if r.status_code == 200 else (r.json()["reason"], None)


async def bulk_records(s: SecurityStack, after_seq: int, request_id: str) -> list[StoredAuditRecord]:
    stored = await s.running.gateway.audit.query(AuditQuery(after_seq=after_seq, limit=100_000))
    return [r for r in stored if r.record.request_id == request_id and r.record.extra.get("bulk") == "1"]


async def last_seq(s: SecurityStack) -> int:
    head, _ = await s.running.gateway.audit.chain_head()
    return head


def audited(records: Sequence[StoredAuditRecord]) -> list[tuple[Any, ...]]:
    return sorted(tuple(getattr(r.record, k) for k in AUDITED) for r in records if "subject_role" not in r.record.extra)


# --- mixed batches -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mixed:
    ids: list[str]              # national ids as sent (good, unknown, malformed)

    @property
    def rest_items(self) -> list[Any]:
        return [{"nationalId": n} for n in self.ids] + [{"nationalId": 5}, {"@type": "type.googleapis.com/x.Y"}]

    @property
    def grpc_items(self) -> list[Message | any_pb2.Any]:
        wrong = any_pb2.Any(type_url="type.googleapis.com/x.Y", value=b"")
        garbage = any_pb2.Any(type_url=PERSON_REQUEST, value=b"\xff\xff\xff")
        return [population_pb2.GetPersonRequest(national_id=n) for n in self.ids] + [garbage, wrong]


def mixed(s: SecurityStack) -> Mixed:
    good = [s.data.households[i].members[0] for i in range(4)]
    return Mixed([good[0], "123", good[1], NOT_IN_REGISTER, good[2], "1991062434055", good[3]])


async def test_each_item_answers_what_a_single_call_answers_on_both_doors(stack: SecurityStack) -> None:
    case = mixed(stack)
    start = await last_seq(stack)
    rest_status, rest_items = await rest_bulk(stack, case.rest_items, headers(stack, "bulk-mixed-rest"))
    grpc_status, grpc_items = await grpc_bulk(stack, case.grpc_items, headers(stack, "bulk-mixed-grpc"))
    assert (rest_status, grpc_status) == (200, "OK")
    assert [i["index"] for i in rest_items] == list(range(len(case.ids) + 2))
    assert all({"index", "status"} <= set(i) and "code" in i["status"] for i in rest_items)   # always there
    expected = [await single_reason(stack, n) for n in case.ids]
    for n, (reason, answer) in enumerate(expected):
        assert reason_of(rest_items[n]) == reason_of(grpc_items[n]) == reason, case.ids[n]
        rest_answer, grpc_answer = rest_items[n].get("answer"), grpc_items[n].get("answer")
        assert rest_answer == grpc_answer
        if answer is not None:
            assert {k: v for k, v in (rest_answer or {}).items() if k != "@type"} == answer
    for n in (len(case.ids), len(case.ids) + 1):   # malformed items: refused alone, as a malformed single call
        assert reason_of(rest_items[n]) == reason_of(grpc_items[n]) == "INVALID_ARGUMENT"
    rest_records = await bulk_records(stack, start, "bulk-mixed-rest")
    grpc_records = await bulk_records(stack, start, "bulk-mixed-grpc")
    assert len(audited(rest_records)) == len(case.ids)   # one per exchange; malformed items are no exchange
    assert audited(rest_records) == audited(grpc_records)
    assert {r.record.protocol for r in rest_records} == {"rest"}
    assert {r.record.protocol for r in grpc_records} == {"grpc"}


async def test_consent_is_checked_per_subject(stack: SecurityStack) -> None:
    subjects = [stack.data.households[i].members[0] for i in range(3)]
    items = [{"nationalId": n, "fiscalYear": 2024} for n in subjects]
    start = await last_seq(stack)
    status, answered = await rest_bulk(stack, items, headers(stack, "bulk-consent"), method=GET_INCOME)
    assert status == 200
    assert [reason_of(i) for i in answered] == ["CONSENT_REQUIRED"] * 3
    records = await bulk_records(stack, start, "bulk-consent")
    assert sorted(r.record.reason for r in records) == ["CONSENT_REQUIRED"] * 3


async def test_order_completion_answers_every_item_once(stack: SecurityStack) -> None:
    ids = [stack.data.households[i].members[0] for i in range(10)]
    status, answered = await grpc_bulk(stack, [population_pb2.GetPersonRequest(national_id=n) for n in ids],
                                       headers(stack, "bulk-completion"), order=bulk_pb2.BULK_ORDER_COMPLETION)
    assert status == "OK"
    assert sorted(i["index"] for i in answered) == list(range(10))
    assert all(i["status"]["code"] == 0 for i in answered)


# --- refused as a whole ------------------------------------------------------------------------


async def test_a_batch_that_cannot_be_run_is_refused_whole_on_both_doors(stack: SecurityStack) -> None:
    one = [stack.data.households[0].members[0]]
    hdrs = headers(stack, "bulk-refused")
    status, body = await rest_bulk(stack, [{"nationalId": n} for n in one], hdrs, method="x.Y/Z")
    code, reason = await grpc_bulk(stack, [population_pb2.GetPersonRequest(national_id=n) for n in one], hdrs,
                                   method="x.Y/Z")
    assert (status, body[0]["reason"]) == (404, "UNKNOWN_SERVICE")
    assert (code, reason[0]["reason"]) == ("UNIMPLEMENTED", "UNKNOWN_SERVICE")
    bulk = lookups(stack)
    limit, bulk.max_items = bulk.max_items, 2
    try:
        status, body = await rest_bulk(stack, [{"nationalId": one[0]}] * 3, hdrs)
        code, reason = await grpc_bulk(stack, [population_pb2.GetPersonRequest(national_id=one[0])] * 3, hdrs)
    finally:
        bulk.max_items = limit
    assert (status, body[0]["reason"]) == (413, "REQUEST_TOO_LARGE")
    assert reason[0]["reason"] == "REQUEST_TOO_LARGE"
    status, body = await rest_bulk(stack, [{"nationalId": one[0]}], [("x-purpose", "student-aid")])
    assert (status, body[0]["reason"]) == (401, "TOKEN_MISSING")


# --- disconnects -------------------------------------------------------------------------------


@dataclass
class SlowRegistry:
    """The population registry, 20 ms slower per call: a batch takes long enough to be left."""

    inner: Any
    calls: int = 0

    async def call(self, method: str, request: Message, *, timeout: float, metadata: Any) -> Message:
        self.calls += 1
        await asyncio.sleep(0.02)
        answer: Message = await self.inner.call(method, request, timeout=timeout, metadata=metadata)
        return answer

    async def close(self) -> None:
        return None


async def _slow(s: SecurityStack) -> tuple[Registry, SlowRegistry]:
    service = GET_PERSON.split("/")[0]
    original = s.running.gateway.registries[service]
    slow = SlowRegistry(original.adapter)
    s.running.gateway.registries[service] = Registry(original.id, slow, original.timeout_s)
    return original, slow


async def _ended(s: SecurityStack, before: int) -> BulkReport:
    deadline = time.monotonic() + 10
    while len(lookups(s).finished) <= before or lookups(s).finished[-1].items == 0:
        assert time.monotonic() < deadline, "the batch did not stop"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)   # its last record, if any, is committed
    return lookups(s).finished[-1]


def _ids(s: SecurityStack, n: int) -> list[str]:
    people = [m for h in s.data.households for m in h.members]
    return [people[i % len(people)] for i in range(n)]


async def _check_left_batch(s: SecurityStack, start: int, rid: str, received: list[dict[str, Any]],
                            ids: list[str], before: int) -> None:
    report = await _ended(s, before)
    records = [r for r in await bulk_records(s, start, rid) if "subject_role" not in r.record.extra]
    assert report.stopped and report.items < len(ids), report
    # Every item the client received has its record (checked by subject) ...
    recorded = {r.record.subject for r in records}
    pseudonymise = s.running.gateway.pseudonymise
    assert {pseudonymise(ids[i["index"]]) for i in received} <= recorded
    # ... and no item has a record unless it was written (the group whose commit or write the departure
    # interrupted aside).
    assert report.answered <= len(records) <= report.answered + report.in_write, (report, len(records))
    assert len(received) <= report.answered


async def test_a_grpc_client_that_leaves_stops_the_batch(stack: SecurityStack) -> None:
    original, slow = await _slow(stack)
    ids = _ids(stack, 400)
    start, before = await last_seq(stack), len(lookups(stack).finished)
    request = bulk_pb2.BulkLookupRequest(method=GET_PERSON, items=packed(
        [population_pb2.GetPersonRequest(national_id=n) for n in ids]))
    call = stack.channel.unary_stream(GRPC_METHOD, request_serializer=bulk_pb2.BulkLookupRequest.SerializeToString,
                                      response_deserializer=bulk_pb2.BulkLookupAnswers.FromString)
    received: list[dict[str, Any]] = []
    try:
        stream = call(request, metadata=tuple(headers(stack, "bulk-left-grpc")), timeout=30)
        async for group in stream:
            received.extend(item_json(item) for item in group.items)
            if len(received) >= 5:
                stream.cancel()
                break
        await _check_left_batch(stack, start, "bulk-left-grpc", received, ids, before)
        assert slow.calls < len(ids)
    finally:
        stack.running.gateway.registries[GET_PERSON.split("/")[0]] = original


async def test_a_rest_client_that_leaves_stops_the_batch(stack: SecurityStack) -> None:
    original, slow = await _slow(stack)
    ids = _ids(stack, 400)
    start, before = await last_seq(stack), len(lookups(stack).finished)
    body = {"method": GET_PERSON, "items": [{"nationalId": n} for n in ids]}
    received: list[dict[str, Any]] = []
    try:
        async with stack.rest.stream("POST", "/v1/bulk:lookup", json=body,
                                     headers=headers(stack, "bulk-left-rest")) as r:
            async for line in r.aiter_lines():
                received.append(json.loads(line))
                if len(received) == 5:
                    break
        await _check_left_batch(stack, start, "bulk-left-rest", received, ids, before)
        assert slow.calls < len(ids)
    finally:
        stack.running.gateway.registries[GET_PERSON.split("/")[0]] = original


async def test_a_client_that_does_not_read_pauses_the_registry_calls(stack: SecurityStack) -> None:
    original, slow = await _slow(stack)
    ids = _ids(stack, 5000)
    request = bulk_pb2.BulkLookupRequest(method=GET_PERSON, items=packed(
        [population_pb2.GetPersonRequest(national_id=n) for n in ids]))
    # A client that really stops reading: no BDP probing, so its HTTP/2 window stays at 64 KB.
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{stack.running.grpc_port}", options=[("grpc.http2.bdp_probe", 0)])
    call = channel.unary_stream(GRPC_METHOD, request_serializer=bulk_pb2.BulkLookupRequest.SerializeToString,
                                response_deserializer=bulk_pb2.BulkLookupAnswers.FromString)
    try:
        stream = call(request, metadata=tuple(headers(stack, "bulk-paused")), timeout=30)
        await stream.read()
        # Unhindered, the window's items at 20 ms each would have called the registry for all items within a
        # few seconds; paused, the count stops growing. Wait until it stands still (a loaded machine is slow).
        deadline, paused_at = time.monotonic() + 15, -1
        while slow.calls != paused_at:
            assert time.monotonic() < deadline, "the registry calls never paused"
            paused_at = slow.calls
            await asyncio.sleep(0.75)
        assert slow.calls == paused_at < len(ids) // 2
        stream.cancel()
    finally:
        stack.running.gateway.registries[GET_PERSON.split("/")[0]] = original
        await channel.close()


async def test_items_grouped_into_the_batch_method_answer_as_single_calls(stack: SecurityStack) -> None:
    from adapters.registries.batching import BatchingAdapter
    from adapters.registries.resilience import ResiliencePolicy, ResilientAdapter
    from tests.integration.test_bulk_batching import CountingTransport

    service = GET_PERSON.split("/")[0]
    original = stack.running.gateway.registries[service]
    counting: Any = original.adapter   # CountingRegistry -> ResilientAdapter -> the gRPC transport
    transport = CountingTransport(counting.inner.inner)
    ops = {op.method: op for op in stack.running.gateway.operations.values() if op.service == service}
    bulk = ResilientAdapter(BatchingAdapter(transport, ops), ops, ResiliencePolicy())
    stack.running.gateway.registries[service] = Registry(original.id, original.adapter, original.timeout_s, bulk)
    case = mixed(stack)
    try:
        status, answered = await rest_bulk(stack, case.rest_items, headers(stack, "bulk-batched"))
        code, grpc_answered = await grpc_bulk(stack, case.grpc_items, headers(stack, "bulk-batched"))
    finally:
        stack.running.gateway.registries[service] = original
    assert (status, code) == (200, "OK")
    assert 0 < len(transport.batches) < 2 * len(case.ids) and sum(transport.batches) <= 2 * len(case.ids)
    for n, national_id in enumerate(case.ids):
        reason, answer = await single_reason(stack, national_id)
        assert reason_of(answered[n]) == reason_of(grpc_answered[n]) == reason, national_id
        assert answered[n].get("answer") == grpc_answered[n].get("answer")
        if answer is not None:
            assert {k: v for k, v in answered[n]["answer"].items() if k != "@type"} == answer


async def test_the_citizen_sees_a_bulk_access_as_bulk_processing(stack: SecurityStack) -> None:
    from gateway.demo.setup import demo_token

    subject = stack.data.households[5].members[0]
    status, _ = await rest_bulk(stack, [{"nationalId": subject}], headers(stack, "bulk-seen"))
    assert status == 200
    token = demo_token(stack.data_dir, issuer_id="demo-citizens", subject=subject, scope="citizen")
    r = await stack.rest.get("/v1/me/accesses", headers={"authorization": f"Bearer {token}"})
    newest = r.json()["accesses"][0]
    assert (newest["service"], newest.get("bulk")) == (GET_PERSON, True)


async def test_the_openapi_document_describes_the_bulk_route(stack: SecurityStack) -> None:
    spec = (await stack.rest.get("/openapi.json")).json()
    post = spec["paths"]["/v1/bulk:lookup"]["post"]
    assert "application/x-ndjson" in post["responses"]["200"]["content"]
    assert {"BulkLookupRequest", "BulkLookupItem"} <= set(spec["components"]["schemas"])


async def test_a_grpc_bulk_call_is_measured_like_a_unary_one(stack: SecurityStack) -> None:
    ids = _ids(stack, 3)

    def lookups_measured(text: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("rpc_server_call_duration_seconds_count")
                   and 'rpc_method="Lookup"' in line and 'rpc_service="passerelle.gateway.v1.BulkExchange"' in line)

    before = lookups_measured(stack.running.gateway.metrics.prometheus_text().decode())
    status, items = await grpc_bulk(stack, [population_pb2.GetPersonRequest(national_id=n) for n in ids],
                                    headers(stack, "bulk-measured"))
    assert status == "OK" and len(items) == 3
    assert lookups_measured(stack.running.gateway.metrics.prometheus_text().decode()) == before + 1


async def test_an_answer_that_cannot_be_written_ends_the_rest_stream_with_internal(
    stack: SecurityStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug on the way out (an answer the line encoder refuses) ends the stream with one INTERNAL status
    line, as gRPC ends the call INTERNAL: never a cut chunked body without a word."""
    import gateway.entrypoints.bulk as bulk_door

    def broken(result: Any, request_id: str) -> Any:
        raise TypeError("Recursion limit reached")

    monkeypatch.setattr(bulk_door, "answer_json", broken)
    ids = [stack.data.households[i].members[0] for i in range(3)]
    status, lines = await rest_bulk(stack, [{"nationalId": n} for n in ids], headers(stack, "bulk-broken-line"))
    assert status == 200
    assert lines and "index" not in lines[-1]
    assert reason_of(lines[-1]) == "INTERNAL" and "Recursion" not in json.dumps(lines[-1])
