"""The shutdown report counts what was in flight at SIGTERM and what of it completed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from gateway.entrypoints.in_flight import CountingAsgi, CountingInterceptor, InFlight


async def test_a_request_answered_before_the_signal_is_not_in_flight_and_one_running_is_counted_once() -> None:
    counter, release = InFlight(), asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await release.wait()

    asgi = CountingAsgi(app, counter)
    await asgi({"type": "http", "path": "/fast"}, None, None)
    slow = asyncio.create_task(asgi({"type": "http", "path": "/slow"}, None, None))
    await asyncio.sleep(0)
    at_signal = counter.snapshot()
    release.set()
    await slow
    assert counter.report(at_signal, "rest") == {"rest_in_flight_at_signal": 1, "rest_completed": 1,
                                                 "rest_unfinished": 0}  # fmt: skip


async def test_grpc_calls_of_every_kind_are_counted_until_their_last_message() -> None:
    counter = InFlight()
    seen: list[int] = []

    async def unary(request: Any, context: Any) -> str:
        seen.append(counter.now)
        return "ok"

    async def stream(request: Any, context: Any) -> AsyncIterator[str]:
        seen.append(counter.now)
        yield "a"

    interceptor = CountingInterceptor(counter)
    handlers: tuple[grpc.RpcMethodHandler[Any, Any], ...] = (
        grpc.unary_unary_rpc_method_handler(unary), grpc.unary_stream_rpc_method_handler(stream)
    )
    for handler in handlers:
        async def continuation(details: Any, handler: Any = handler) -> Any:
            return handler

        wrapped = await interceptor.intercept_service(continuation, None)
        behaviour = wrapped.unary_unary or wrapped.unary_stream
        result = behaviour(None, None)
        if hasattr(result, "__aiter__"):
            assert [m async for m in result] == ["a"]
        else:
            assert await result == "ok"
    assert seen == [1, 1]
    assert (counter.started, counter.finished) == (2, 2)


async def test_a_methods_handler_is_wrapped_once_not_per_call() -> None:
    import grpc

    from gateway.entrypoints._grpc_security import WrapOnce

    cache = WrapOnce(maxsize=2)
    made: list[int] = []

    async def behaviour(request: Any, context: Any) -> Any:
        return request

    handlers: list[Any] = [grpc.unary_unary_rpc_method_handler(behaviour) for _ in range(3)]
    a, b, c = handlers

    def make(h: Any) -> Any:
        made.append(1)
        return h._replace()

    first = cache.get(a, "/s/A", lambda: make(a))
    assert cache.get(a, "/s/A", lambda: make(a)) is first and len(made) == 1
    # Another handler object (even for the same method) is wrapped anew; the cache stays bounded.
    assert cache.get(b, "/s/A", lambda: make(b)) is not first
    cache.get(c, "/s/C", lambda: make(c))
    cache.get(a, "/s/A", lambda: make(a))
    assert len(made) == 4
