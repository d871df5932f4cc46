"""The gRPC modes benchmark's hops (``bench.grpc_modes``): each mode forwards a real call, and a refusal, for real.

An in-process upstream on 127.0.0.1 stands for the population registry: it answers a ``Person`` for one
national id and NOT_FOUND for any other. Each hop is started in-process on a free port, called once
the way h2load calls it (no deadline), and stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from bench.grpc_modes import GRPC_PATH, Committer, Work, check, start_aio_hop, start_sync_hop
from gateway._pb.registry.population.v1 import population_pb2

_KNOWN = "1985032912345"
_PERSON = population_pb2.Person(national_id=_KNOWN, given_names="Anne", family_name="Muller").SerializeToString()


def _request(nid: str) -> bytes:
    return population_pb2.GetPersonRequest(national_id=nid).SerializeToString()


def _get_person(raw: bytes, context: grpc.ServicerContext) -> bytes:
    if population_pb2.GetPersonRequest.FromString(raw).national_id != _KNOWN:
        context.abort(grpc.StatusCode.NOT_FOUND, "no such person")
    return _PERSON


@pytest.fixture
def upstream() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "registry.population.v1.PopulationRegistry", {"GetPerson": grpc.unary_unary_rpc_method_handler(_get_person)},
    )])  # fmt: skip
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0).wait()


def _refusal_code(port: int) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        get: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(GRPC_PATH)
        with pytest.raises(grpc.RpcError) as caught:
            get(_request("1990010154321"), timeout=5)
    code: grpc.StatusCode = caught.value.code()
    return code


@pytest.mark.parametrize("work", [False, True], ids=["pass-through", "with-work"])
def test_the_thread_pool_hop_forwards_without_a_caller_deadline_and_passes_refusals_on(
    upstream: str, work: bool
) -> None:
    committer = Committer(0.0003) if work else None
    server, channel, port = start_sync_hop(upstream, 4, Work(10) if work else None, committer)
    try:
        check(port, _request(_KNOWN), _PERSON)
        assert _refusal_code(port) == grpc.StatusCode.NOT_FOUND
    finally:
        server.stop(0).wait()
        channel.close()
        if committer is not None:
            committer.stop()
    assert committer is None or committer.committed == 1  # the answered call waited for its commit


@pytest.mark.parametrize("work", [False, True], ids=["pass-through", "with-work"])
async def test_the_aio_hop_forwards_without_a_caller_deadline_and_passes_refusals_on(upstream: str, work: bool) -> None:
    committer = Committer(0.0003) if work else None
    server, channel, port = await start_aio_hop(upstream, Work(10) if work else None, committer)
    try:
        await asyncio.to_thread(check, port, _request(_KNOWN), _PERSON)
        assert await asyncio.to_thread(_refusal_code, port) == grpc.StatusCode.NOT_FOUND
    finally:
        await server.stop(0)
        await channel.close()
        if committer is not None:
            committer.stop()
    assert committer is None or committer.committed == 1


def test_check_refuses_a_target_that_answers_an_error(upstream: str) -> None:
    """h2load counts a gRPC error as a success (HTTP 200): the bench checks each hop's answer first."""
    port = int(upstream.rsplit(":", 1)[1])
    with pytest.raises(RuntimeError, match="NOT_FOUND"):
        check(port, _request("1990010154321"), _PERSON)
