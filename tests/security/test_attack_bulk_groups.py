"""Attack review of the 128-item answer groups (3f0ccf9..49f822d): regressions of the findings (fixed)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from gateway._pb.passerelle.gateway.v1 import bulk_pb2
from gateway._pb.registry.population.v1 import population_pb2
from gateway.core.pipeline import Registry
from gateway.entrypoints.bulk import GRPC_METHOD
from tests.security.conftest import SecurityStack
from tests.security.test_bulk import GET_PERSON, _ids, bulk_records, headers, last_seq, lookups, packed

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVICE = GET_PERSON.split("/")[0]


@dataclass
class BigAnswers:
    """The population registry, with 40 KB of given names per person (a registry answer may be up to
    4 MiB on gRPC, 1 MiB on REST); the first item answers last, so the others wait at their gates and
    leave together in one group."""

    inner: Any
    first: str

    async def call(self, method: str, request: Message, *, timeout: float, metadata: Any) -> Message:
        if getattr(request, "national_id", "") == self.first:
            await asyncio.sleep(0.5)
        answer: Message = await self.inner.call(method, request, timeout=timeout, metadata=metadata)
        if isinstance(answer, population_pb2.Person):
            answer.given_names = "A" * 40_000
        return answer

    async def close(self) -> None:
        return None


async def test_a_grpc_answer_group_fits_a_default_grpc_client(stack: SecurityStack) -> None:
    """One stream message per group: 128 answers of 40 KB are one 5 MB message, above the 4 MiB a
    default grpc client accepts (grpc.max_receive_message_length). With groups of 32 it was 1.3 MB; the
    items of that group are recorded (and counted answered) although the client can never read them."""
    original = stack.running.gateway.registries[SERVICE]
    ids = sorted(set(_ids(stack, 200)))[:130]
    stack.running.gateway.registries[SERVICE] = Registry(original.id, BigAnswers(original.adapter, ids[0]),
                                                         original.timeout_s)
    rid = "attack-big-group"
    start = await last_seq(stack)
    request = bulk_pb2.BulkLookupRequest(method=GET_PERSON, items=packed(
        [population_pb2.GetPersonRequest(national_id=n) for n in ids]))
    call = stack.channel.unary_stream(GRPC_METHOD, request_serializer=bulk_pb2.BulkLookupRequest.SerializeToString,
                                      response_deserializer=bulk_pb2.BulkLookupAnswers.FromString)
    received: list[int] = []
    error: grpc.aio.AioRpcError | None = None
    try:
        async for group in call(request, metadata=tuple(headers(stack, rid)), timeout=30):
            received.extend(i.index for i in group.items)
    except grpc.aio.AioRpcError as exc:
        error = exc
    finally:
        stack.running.gateway.registries[SERVICE] = original
    await asyncio.sleep(0.3)
    records = [r for r in await bulk_records(stack, start, rid) if "subject_role" not in r.record.extra]
    report = next(r for r in reversed(lookups(stack).finished) if r.request_id == rid)
    assert error is None, (error.code(), error.details(), len(received), len(records), report)
    assert len(received) == len(ids)


# --- pacing to the quota: every waiting item of the window polls the bucket ------------------------------


async def test_a_paced_batch_asks_the_quota_about_once_per_item() -> None:
    """With the shipped quota (rate_per_s 1000, max_concurrent 128) a batch runs at the quota's pace, and
    each item of the window waiting for a token sleeps until the next token and asks again: every token
    wakes the whole window (measured: 34 asks per item with a window of 128, 65 with 256; ≈ 0.6 ms of
    CPU per item on polling alone, where an item's own work is ≈ 0.3 ms)."""
    import time
    from typing import cast

    from google.protobuf import wrappers_pb2

    from gateway.application.bulk import BulkLookups, Order
    from gateway.core.auth import Principal
    from gateway.core.contracts import Operation
    from gateway.core.pipeline import CallContext, ExchangePipeline
    from gateway.core.quotas import Admission, Quota

    principal = Principal(kind="consumer", id="cedies", issuer="t", jti="j", expires_at=0.0, scopes=frozenset(),
                          claims={})
    admission = Admission(Quota(rate_per_s=1000.0, burst=100, max_concurrent=128))
    asks = 0
    would_wait = admission.would_wait

    def counted(consumer: str, now: float) -> float:
        nonlocal asks
        asks += 1
        return would_wait(consumer, now)

    admission.would_wait = counted  # type: ignore[method-assign]

    class Pipeline:
        def __init__(self) -> None:
            self.admission = admission

        def check_still_authenticated(self, principal: Principal, protocol: str) -> None:
            return None

        async def exchange_as(self, principal: Principal, op: Any, request: Message, ctx: Any, *,
                              before_record: Any = None) -> Message:
            admission.acquire(principal.id, time.monotonic())
            try:
                await asyncio.sleep(0.001)   # the registry
            finally:
                admission.release(principal.id)
            await before_record()
            return request

    lookups = BulkLookups(cast(ExchangePipeline, Pipeline()), {}, max_items=10_000, in_flight=256,
                          consumer_in_flight=512, group_max=128)

    async def write(answers: Any, done: Any) -> None:
        for _ in answers:
            done()

    n = 600
    await lookups.run(principal, cast(Operation, object()), range(n), lambda i: wrappers_pb2.Int32Value(value=i),
                      CallContext("rest", "t"), order=Order.INDEX, write=write)
    assert asks <= 3 * n, f"{asks / n:.1f} quota asks per item"


# --- ids the gateway makes ---------------------------------------------------------------------------


async def test_the_request_id_of_a_registry_batch_call_holds_no_national_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """The id sent to a registry is "always a safe one" (gateway/entrypoints/_context.py), but a batch call's
    own x-request-id is ``batch-`` + a raw uuid4 hex: about 1 in 100,000 holds a valid national id."""
    import uuid

    from adapters.registries import batching
    from gateway.core.caller_text import caller_id_problem

    draws = iter([uuid.UUID("932f1fddee0b42b29547062508657478"), uuid.UUID(int=1)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    (key, value), = batching._batch_metadata([])
    assert key == "x-request-id"
    assert caller_id_problem(value) is None, value


async def test_fresh_caller_id_refuses_a_prefix_it_can_never_satisfy() -> None:
    """``prefix`` must itself be allowed, says the docstring; a prefix of 33+ characters, or one holding a
    national id, made it draw for ever (the event loop with it)."""
    import itertools

    from gateway.core.caller_text import fresh_caller_id

    drawn = itertools.count()

    def draw() -> str:
        if next(drawn) > 100:
            raise AssertionError("fresh_caller_id drew more than 100 times for a prefix that can never pass")
        return "0f" * 16

    with pytest.raises(ValueError):
        fresh_caller_id("x" * 40, draw=draw)


# --- configuration ----------------------------------------------------------------------------------


async def test_a_group_larger_than_the_window_is_a_configuration_error() -> None:
    """config.py says bulk_group_max is "at most bulk_in_flight", but 1000 in a window of 256 is accepted
    and silently cut to 256 (BulkLookups.group_max): an operator reading the file is told nothing."""
    from pydantic import ValidationError

    from gateway.config import GatewaySection

    with pytest.raises(ValidationError):
        GatewaySection(bulk_group_max=1000, bulk_in_flight=256)
