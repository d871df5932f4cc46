"""Bulk look-ups (issue 16 review): regressions of the attacker's findings.

* A batch in index order does not deadlock when the consumer's concurrency is below the window.
* A token revoked or expired mid-batch stops the batch: no record for items not processed.
* Call-level values are checked once, before the stream: no per-item refusal records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from gateway._pb.passerelle.gateway.v1 import bulk_pb2
from gateway._pb.registry.population.v1 import population_pb2
from gateway.core.quotas import Admission, Quota
from gateway.entrypoints.bulk import GRPC_METHOD
from tests.security.conftest import SecurityStack
from tests.security.test_bulk import (
    GET_PERSON,
    _ended,
    _ids,
    _slow,
    bulk_records,
    headers,
    last_seq,
    lookups,
    packed,
    reason_of,
    rest_bulk,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

GET_PERSON_SERVICE = "registry.population.v1.PopulationRegistry"


@contextlib.contextmanager
def admission(s: SecurityStack, quota: Quota, share: float = 1.0) -> Iterator[Admission]:
    pipeline = lookups(s).pipeline
    previous = pipeline._admission
    a = Admission(quota)
    if share < 1.0:   # as with --workers: this process's part of the consumer's quota
        a.set_shares(share, {}, 0.0)
    pipeline._admission = a
    try:
        yield a
    finally:
        pipeline._admission = previous


@pytest.mark.parametrize(("max_concurrent", "share"), [(1, 1.0), (4, 1.0), (4, 0.25)])
async def test_index_order_does_not_deadlock_below_the_window(
    stack: SecurityStack, max_concurrent: int, share: float
) -> None:
    original, _slow_registry = await _slow(stack)
    ids = _ids(stack, 40)
    rid = f"bulk-deadlock-{max_concurrent}-{share}"
    start = await last_seq(stack)
    try:
        with admission(stack, Quota(rate_per_s=0.0, burst=1, max_concurrent=max_concurrent)) as a:
            status, items = await asyncio.wait_for(
                rest_bulk(stack, [{"nationalId": n} for n in ids], headers(stack, rid)), timeout=20)
            assert a.in_flight("cedies") == 0
        assert status == 200
        assert [i["index"] for i in items] == list(range(len(ids)))
        assert all(i["status"]["code"] == 0 for i in items), items[:3]
        assert len([r for r in await bulk_records(stack, start, rid)
                    if "subject_role" not in r.record.extra]) == len(ids)
    finally:
        stack.running.gateway.registries[GET_PERSON_SERVICE] = original


# --- a token that no longer holds stops the batch ------------------------------------------------------


def _verifier(s: SecurityStack) -> Any:
    return lookups(s).pipeline._verifier


@contextlib.contextmanager
def _later(s: SecurityStack, seconds: float) -> Iterator[None]:
    verifier = _verifier(s)
    clock = verifier._clock
    verifier._clock = lambda: clock() + seconds
    try:
        yield
    finally:
        verifier._clock = clock


async def _stopped_rest(s: SecurityStack, rid: str, stop: Callable[[], contextlib.AbstractContextManager[None]]
                        ) -> tuple[list[dict[str, Any]], int]:
    original, _ = await _slow(s)
    ids = _ids(s, 400)
    start, before = await last_seq(s), len(lookups(s).finished)
    lines: list[dict[str, Any]] = []
    try:
        with contextlib.ExitStack() as stack_:
            async with s.rest.stream("POST", "/v1/bulk:lookup", json={"method": GET_PERSON, "items": [
                    {"nationalId": n} for n in ids]}, headers=headers(s, rid)) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    if line:
                        lines.append(json.loads(line))
                    if len(lines) == 5:
                        stack_.enter_context(stop())
            report = await _ended(s, before)
    finally:
        s.running.gateway.registries[GET_PERSON_SERVICE] = original
    records = [r for r in await bulk_records(s, start, rid) if "subject_role" not in r.record.extra]
    items = [i for i in lines if "index" in i]
    assert report.stopped and report.answered == len(items) < len(ids)
    assert len(items) <= len(records) <= len(items) + 1   # no record for an item not processed
    return lines, len(records)


async def test_a_revoked_consumer_stops_its_batch_with_one_error(stack: SecurityStack) -> None:
    @contextlib.contextmanager
    def revoked() -> Iterator[None]:
        _verifier(stack).revoke_consumer("cedies")
        try:
            yield
        finally:
            _verifier(stack).revocations.consumers.discard("cedies")

    lines, _ = await _stopped_rest(stack, "bulk-revoked", revoked)
    assert "index" not in lines[-1] and reason_of(lines[-1]) == "TOKEN_REVOKED"
    assert all("index" in i for i in lines[:-1])


async def test_a_token_that_expires_stops_its_batch_with_one_error(stack: SecurityStack) -> None:
    lines, _ = await _stopped_rest(stack, "bulk-expired", lambda: _later(stack, 86_400.0))
    assert "index" not in lines[-1] and reason_of(lines[-1]) == "TOKEN_EXPIRED"


async def test_a_revoked_token_stops_a_grpc_batch_with_the_call_status(stack: SecurityStack) -> None:
    original, _ = await _slow(stack)
    ids = _ids(stack, 400)
    start = await last_seq(stack)
    request = bulk_pb2.BulkLookupRequest(method=GET_PERSON, items=packed(
        [population_pb2.GetPersonRequest(national_id=n) for n in ids]))
    call = stack.channel.unary_stream(GRPC_METHOD, request_serializer=bulk_pb2.BulkLookupRequest.SerializeToString,
                                      response_deserializer=bulk_pb2.BulkLookupItem.FromString)
    received = 0
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _item in call(request, metadata=tuple(headers(stack, "bulk-revoked-grpc")), timeout=30):
                received += 1
                if received == 5:
                    _verifier(stack).revoke_consumer("cedies")
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED, raised.value
        assert received < len(ids)
        await asyncio.sleep(0.1)
        records = [r for r in await bulk_records(stack, start, "bulk-revoked-grpc")
                   if "subject_role" not in r.record.extra]
        assert received <= len(records) <= received + 1
    finally:
        _verifier(stack).revocations.consumers.discard("cedies")
        stack.running.gateway.registries[GET_PERSON_SERVICE] = original


# --- call-level values: refused once, before the stream ------------------------------------------------


@pytest.mark.parametrize(("header", "value", "reason"), [
    ("x-purpose", "", "PURPOSE_MISSING"),
    ("x-purpose", "not-a-purpose", "UNKNOWN_PURPOSE"),
    ("x-case-id", "case-1991062434054", "CALLER_FIELD_INVALID"),
    ("x-ai-system", "unregistered-ai", "CALLER_FIELD_INVALID"),
])
async def test_call_level_values_refuse_the_whole_call_without_records(
    stack: SecurityStack, header: str, value: str, reason: str
) -> None:
    rid = f"bulk-call-level-{reason}"
    hdrs = [(k, v) for k, v in headers(stack, rid) if k != header] + ([(header, value)] if value else [])
    start = await last_seq(stack)
    status, answer = await rest_bulk(stack, [{"nationalId": n} for n in _ids(stack, 20)], hdrs)
    assert status != 200 and answer[0]["reason"] == reason, answer
    request = bulk_pb2.BulkLookupRequest(method=GET_PERSON, items=packed(
        [population_pb2.GetPersonRequest(national_id=n) for n in _ids(stack, 20)]))
    call = stack.channel.unary_stream(GRPC_METHOD, request_serializer=bulk_pb2.BulkLookupRequest.SerializeToString,
                                      response_deserializer=bulk_pb2.BulkLookupItem.FromString)
    with pytest.raises(grpc.aio.AioRpcError):
        async for _item in call(request, metadata=tuple(hdrs), timeout=10):
            pass
    assert await bulk_records(stack, start, rid) == []
