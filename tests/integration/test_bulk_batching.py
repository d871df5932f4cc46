"""Bulk items grouped into a registry's batch method (``batch_of``): ``BatchingAdapter`` and the gRPC transport.

Each caller gets what the single method would have answered it (its answer, or its own refusal),
calls made together become one batch call, and a caller that leaves is left out of the batch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from google.protobuf.message import Message

from adapters.registries.batching import BatchingAdapter
from adapters.registries.grpc_registry import GrpcRegistryAdapter
from gateway._pb.registry.population.v1 import population_pb2
from gateway.core.contracts import BatchMethod, Operation, load_operations
from gateway.core.errors import GatewayError, Reason
from gateway.core.identifiers import make_national_id
from gateway.demo.data import DemoData, generate
from gateway.demo.registries import start_grpc_registry

pytestmark = pytest.mark.asyncio(loop_scope="module")

OPS = load_operations(["registry.population.v1.PopulationRegistry"])
BY_METHOD: dict[str, Operation] = {op.method: op for op in OPS.values()}
NOT_IN_REGISTER = make_national_id(dt.date(2001, 1, 1), 999)   # valid, and nobody has it in the demo data


@dataclass
class Registry:
    data: DemoData
    transport: GrpcRegistryAdapter


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def registry() -> AsyncIterator[Registry]:
    data = generate(20260101, persons=50)
    server, port = await start_grpc_registry(data)
    transport = GrpcRegistryAdapter(f"127.0.0.1:{port}", BY_METHOD)
    try:
        yield Registry(data, transport)
    finally:
        await transport.close()
        await server.stop(0)


def request(national_id: str) -> population_pb2.GetPersonRequest:
    return population_pb2.GetPersonRequest(national_id=national_id)


async def test_the_batch_method_answers_each_request_as_the_single_method(registry: Registry) -> None:
    batch = BY_METHOD["GetPerson"].batch
    assert batch is not None and batch.method == "GetPersons"
    known = registry.data.households[0].members[0]
    results = await registry.transport.call_batch(
        batch, [request(known), request(NOT_IN_REGISTER), request("123")], timeout=5, metadata=()
    )
    single = await registry.transport.call("GetPerson", request(known), timeout=5, metadata=())
    assert results[0] == single
    assert [r.reason for r in results[1:] if isinstance(r, GatewayError)] == [
        Reason.SUBJECT_NOT_FOUND, Reason.INVALID_ARGUMENT]


@dataclass
class CountingTransport:
    """The gRPC transport, counting batch calls and their sizes."""

    inner: GrpcRegistryAdapter
    batches: list[int] = field(default_factory=list)

    async def call(self, method: str, request: Message, *, timeout: float,
                   metadata: Sequence[tuple[str, str]]) -> Message:
        return await self.inner.call(method, request, timeout=timeout, metadata=metadata)

    async def call_batch(self, batch: BatchMethod, requests: Sequence[Message], *, timeout: float,
                         metadata: Sequence[tuple[str, str]]) -> list[Message | GatewayError]:
        self.batches.append(len(requests))
        return await self.inner.call_batch(batch, requests, timeout=timeout, metadata=metadata)

    async def close(self) -> None:
        return None


async def test_calls_made_together_become_one_batch_call(registry: Registry) -> None:
    transport = CountingTransport(registry.transport)
    adapter = BatchingAdapter(transport, BY_METHOD, max_batch=16)
    ids = [*[m for h in registry.data.households for m in h.members][:20], NOT_IN_REGISTER]
    answers = await asyncio.gather(
        *(adapter.call("GetPerson", request(n), timeout=5, metadata=()) for n in ids), return_exceptions=True
    )
    assert transport.batches == [16, 5]
    singles = [await registry.transport.call("GetPerson", request(n), timeout=5, metadata=()) for n in ids[:-1]]
    assert answers[:-1] == singles
    last = answers[-1]
    assert isinstance(last, GatewayError) and last.reason is Reason.SUBJECT_NOT_FOUND


async def test_a_caller_that_leaves_is_left_out_of_the_batch(registry: Registry) -> None:
    transport = CountingTransport(registry.transport)
    adapter = BatchingAdapter(transport, BY_METHOD, linger_s=0.05)
    ids = [m for h in registry.data.households for m in h.members][:3]
    calls = [asyncio.create_task(adapter.call("GetPerson", request(n), timeout=5, metadata=())) for n in ids]
    await asyncio.sleep(0.01)
    calls[1].cancel()
    done = await asyncio.gather(*calls, return_exceptions=True)
    assert transport.batches == [2]
    assert isinstance(done[1], asyncio.CancelledError)
    assert [type(d) for d in (done[0], done[2])] == [population_pb2.Person, population_pb2.Person]


@dataclass
class FailingTransport:
    """A registry that refuses every batch, keeping the metadata each batch call was sent with."""

    sent: list[list[tuple[str, str]]] = field(default_factory=list)

    async def call(self, method: str, request: Message, *, timeout: float,
                   metadata: Sequence[tuple[str, str]]) -> Message:
        raise AssertionError("grouped calls go as a batch")

    async def call_batch(self, batch: BatchMethod, requests: Sequence[Message], *, timeout: float,
                         metadata: Sequence[tuple[str, str]]) -> list[Message | GatewayError]:
        self.sent.append(list(metadata))
        raise GatewayError(Reason.REGISTRY_UNAVAILABLE)

    async def close(self) -> None:
        return None


async def test_a_batch_carries_neutral_metadata_and_each_caller_its_own_error() -> None:
    transport = FailingTransport()
    adapter = BatchingAdapter(transport, BY_METHOD)
    trace = ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    done = await asyncio.gather(*(
        adapter.call("GetPerson", request(n), timeout=5, metadata=[("x-request-id", f"caller-{i}"), trace])
        for i, n in enumerate(["1991062434054", "1991062434054"])), return_exceptions=True)
    [sent] = transport.sent
    assert trace in sent and not any(v.startswith("caller-") for _, v in sent)
    assert dict(sent)["x-request-id"].startswith("batch-")
    assert all(isinstance(d, GatewayError) and d.reason is Reason.REGISTRY_UNAVAILABLE for d in done)
    assert done[0] is not done[1]
