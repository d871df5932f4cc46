"""Calls through the gateway that return what the caller saw: data, or a clear reason."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

import grpc
import httpx
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway._pb.registry.population.v1 import population_pb2, population_pb2_grpc
from gateway.core.types import Outcome, StoredAuditRecord
from tests.faults.conftest import FaultStack
from tests.support import grpc_stub

#: Longest any single call may take in these tests, far above every deadline used: a hang detector.
HANG_S = 15.0


@dataclass(frozen=True)
class Seen:
    request_id: str
    ok: bool
    reason: str  # the gateway's reason code, "" when data came back


def _reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(cast(grpc.Call, err))  # an AioRpcError has the trailers, code and details it reads
    if status is None:
        return f"transport:{err.code().name}"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason: str = info.reason  # google.* is untyped here: name what comes back
            return reason
    return f"status:{err.code().name}"


async def grpc_person(stack: FaultStack, request_id: str, *, nid: str = "", timeout: float = 2.0) -> Seen:
    stub = grpc_stub(population_pb2_grpc.PopulationRegistryStub, stack.channel)
    request = population_pb2.GetPersonRequest(national_id=nid or stack.person())
    try:
        async with asyncio.timeout(HANG_S):
            await stub.GetPerson(request, metadata=stack.metadata(request_id), timeout=timeout)
    except grpc.aio.AioRpcError as err:
        return Seen(request_id, False, _reason(err))
    return Seen(request_id, True, "")


async def rest_income(stack: FaultStack, request_id: str, nid: str, year: int = 2024) -> Seen:
    async with asyncio.timeout(HANG_S):
        r = await stack.rest.get(f"/v1/tax/income-certificates/{nid}/{year}", headers=stack.headers(request_id))
    return _seen_rest(request_id, r)


async def rest_person(stack: FaultStack, request_id: str) -> Seen:
    async with asyncio.timeout(HANG_S):
        r = await stack.rest.get(f"/v1/population/persons/{stack.person()}", headers=stack.headers(request_id))
    return _seen_rest(request_id, r)


def _seen_rest(request_id: str, r: httpx.Response) -> Seen:
    if r.status_code == 200:
        return Seen(request_id, True, "")
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return Seen(request_id, False, r.json()["reason"])


def assert_every_answer_audited(seen: list[Seen], records: list[StoredAuditRecord], *, refusals: bool = True) -> None:
    """Each call that returned data has an ``ok`` record; each refusal (when the log was up) one with its reason."""
    by_request = {r.record.request_id: r.record for r in records}
    for s in seen:
        record = by_request.get(s.request_id)
        if s.ok:
            assert record is not None and record.outcome is Outcome.OK, f"data without its audit record: {s}"
        elif refusals or record is not None:
            assert record is not None, f"refusal without its audit record: {s}"
            assert record.outcome is not Outcome.OK and record.reason == s.reason, (s, record)
