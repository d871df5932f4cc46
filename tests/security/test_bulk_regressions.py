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
                                      response_deserializer=bulk_pb2.BulkLookupAnswers.FromString)
    received = 0
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for group in call(request, metadata=tuple(headers(stack, "bulk-revoked-grpc")), timeout=30):
                before, received = received, received + len(group.items)
                if before < 5 <= received:
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
    ("x-fields", "noSuchField", "INVALID_ARGUMENT"),
    ("x-fields", "familyName,noSuchField", "INVALID_ARGUMENT"),
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
                                      response_deserializer=bulk_pb2.BulkLookupAnswers.FromString)
    with pytest.raises(grpc.aio.AioRpcError):
        async for _group in call(request, metadata=tuple(hdrs), timeout=10):
            pass
    assert await bulk_records(stack, start, rid) == []


# --- a client that stays connected but reads nothing: the batch stops, its slots are given back --------


@contextlib.contextmanager
def _idle_timeout(s: SecurityStack, seconds: float) -> Iterator[None]:
    previous, lookups(s).idle_timeout_s = lookups(s).idle_timeout_s, seconds
    try:
        yield
    finally:
        lookups(s).idle_timeout_s = previous


async def test_grpc_clients_that_stop_reading_give_their_slots_back(stack: SecurityStack) -> None:
    ids = _ids(stack, 2000)
    request = bulk_pb2.BulkLookupRequest(method=GET_PERSON, items=packed(
        [population_pb2.GetPersonRequest(national_id=n) for n in ids]))
    # Clients that really stop reading: no BDP probing, so their HTTP/2 window stays at 64 KB.
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{stack.running.grpc_port}",
                                          options=[("grpc.http2.bdp_probe", 0)]) for _ in range(2)]
    start, before = await last_seq(stack), len(lookups(stack).finished)
    try:
        with _idle_timeout(stack, 0.5), admission(stack, Quota(rate_per_s=0.0, burst=1, max_concurrent=64)) as a:
            streams = []
            for k, channel in enumerate(channels):
                call = channel.unary_stream(GRPC_METHOD,
                                            request_serializer=bulk_pb2.BulkLookupRequest.SerializeToString,
                                            response_deserializer=bulk_pb2.BulkLookupAnswers.FromString)
                stream = call(request, metadata=tuple(headers(stack, f"bulk-idle-grpc-{k}")), timeout=30)
                await stream.read()   # one answer, then nothing
                streams.append(stream)
            deadline = asyncio.get_running_loop().time() + 10
            while len(lookups(stack).finished) < before + 2:
                assert asyncio.get_running_loop().time() < deadline, "the idle batches did not stop"
                await asyncio.sleep(0.05)
            reports = list(lookups(stack).finished)[before:]
            assert all(r.idle and r.stopped and r.answered < len(ids) for r in reports), reports
            assert a.in_flight("cedies") == 0
            assert lookups(stack)._batches.get("cedies", 0) == 0
            # A third batch of the same consumer is not held up by the two idle ones.
            status, items = await asyncio.wait_for(
                grpc_bulk_items(stack, ids[:5], "bulk-idle-grpc-third"), timeout=10)
            assert status == "OK" and len(items) == 5
        await asyncio.sleep(0.1)
        assert sorted(r.request_id for r in reports) == ["bulk-idle-grpc-0", "bulk-idle-grpc-1"]
        for report in reports:   # items answered stay audited, no others (the cut group aside)
            records = [r for r in await bulk_records(stack, start, report.request_id)
                       if "subject_role" not in r.record.extra]
            assert report.answered <= len(records) <= report.answered + report.in_write, (report, len(records))
        for stream in streams:
            stream.cancel()
    finally:
        for channel in channels:
            await channel.close()


async def grpc_bulk_items(s: SecurityStack, ids: list[str], rid: str) -> tuple[str, list[dict[str, Any]]]:
    from tests.security.test_bulk import grpc_bulk

    return await grpc_bulk(s, [population_pb2.GetPersonRequest(national_id=n) for n in ids], headers(s, rid))


async def test_a_rest_client_that_stops_reading_gives_its_slots_back(stack: SecurityStack) -> None:
    import socket

    ids = _ids(stack, 20_000)   # more than the socket buffers hold
    body = json.dumps({"method": GET_PERSON, "items": [{"nationalId": n} for n in ids]}).encode()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # a small window: the server must wait
    sock.connect(("127.0.0.1", stack.running.rest_port))
    sock.setblocking(False)
    before = len(lookups(stack).finished)
    with _idle_timeout(stack, 0.5):
        reader, writer = await asyncio.open_connection(sock=sock)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers(stack, "bulk-idle-rest"))
        writer.write(f"POST /v1/bulk:lookup HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
                     f"content-length: {len(body)}\r\n{head}\r\n".encode() + body)
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        await reader.read(1000)   # a little, then nothing
        try:
            deadline = asyncio.get_running_loop().time() + 15
            while len(lookups(stack).finished) <= before:
                assert asyncio.get_running_loop().time() < deadline, "the idle batch did not stop"
                await asyncio.sleep(0.05)
            report = lookups(stack).finished[-1]
            assert report.idle and report.stopped and report.answered < len(ids), report
            await asyncio.sleep(1.0)   # the stream gave up its last frame too
            assert lookups(stack)._batches.get("cedies", 0) == 0
        finally:
            writer.close()


# --- a consumer's batches at a time: refused before the body is read -------------------------------------


async def test_a_consumers_batches_at_a_time_are_capped_before_the_body(stack: SecurityStack) -> None:
    from gateway.application.bulk import BatchSlot

    bulk = lookups(stack)
    held = [BatchSlot(bulk._batches, "cedies") for _ in range(bulk.consumer_batches)]
    try:
        # Headers and the start of a (would-be large) body: the refusal comes without the rest of it.
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.running.rest_port)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers(stack, "bulk-cap-rest"))
        writer.write(f"POST /v1/bulk:lookup HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
                     f"content-length: 10000000\r\n{head}\r\n".encode() + b'{"method": "')
        await writer.drain()
        try:
            response = await asyncio.wait_for(reader.read(65536), timeout=10)
        finally:
            writer.close()
        status_line, _, rest = response.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 429"), response
        assert b"CONCURRENCY_LIMITED" in rest and b"\r\nretry-after: " in rest.lower(), response
        from tests.security.test_bulk import grpc_bulk

        status, answer = await grpc_bulk(stack, [population_pb2.GetPersonRequest(national_id=_ids(stack, 1)[0])],
                                         headers(stack, "bulk-cap-grpc"))
        assert status == "RESOURCE_EXHAUSTED" and answer[0]["reason"] == "CONCURRENCY_LIMITED"
        # Another consumer is not affected.
        status_other, _ = await rest_bulk(stack, [{"nationalId": _ids(stack, 1)[0]}],
                                          headers(stack, "bulk-cap-other", consumer="caf"))
        assert status_other != 429
    finally:
        for slot in held:
            slot.release()
    # Slots are given back however a batch ends: answered, refused whole, too many items.
    assert (await rest_bulk(stack, [{"nationalId": n} for n in _ids(stack, 3)], headers(stack, "bulk-cap-1")))[0] == 200
    assert (await rest_bulk(stack, [{"nationalId": "x"}], headers(stack, "bulk-cap-2"), method="nope/Nope"))[0] != 200
    too_many: list[dict[str, str]] = [{}] * (bulk.max_items + 1)
    assert (await rest_bulk(stack, too_many, headers(stack, "bulk-cap-3")))[0] == 413
    assert (await grpc_bulk_items(stack, _ids(stack, 3), "bulk-cap-4"))[0] == "OK"
    await asyncio.sleep(0.1)
    assert bulk._batches == {}


async def test_a_body_of_millions_of_empty_items_does_not_block_the_loop(stack: SecurityStack) -> None:
    n = 1_500_000
    raw = b'{"method": "' + GET_PERSON.encode() + b'", "items": [' + b",".join([b"{}"] * n) + b"]}"
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not done.is_set():
            t = loop.time()
            await asyncio.sleep(0.005)
            gaps.append(loop.time() - t)

    tick = asyncio.create_task(ticker())
    try:
        r = await stack.rest.post("/v1/bulk:lookup", content=raw, timeout=60,
                                  headers=[*headers(stack, "bulk-empty-items"), ("content-type", "application/json")])
    finally:
        done.set()
        await tick
    assert r.status_code == 413 and r.json()["reason"] == "REQUEST_TOO_LARGE", r.text
    assert max(gaps) < 0.5, max(gaps)   # parsed in a worker thread, not on the event loop
    assert lookups(stack)._batches == {}
