"""What is in flight at each front door, for an honest shutdown report.

``InFlight`` counts calls started and finished. At SIGTERM the gateway takes a
``snapshot()``; after draining, ``report(snapshot)`` says how many were in flight
at the signal, how many of those (and of any started since) completed, and how
many were still running when the grace period ended.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from gateway.entrypoints._grpc_security import WrapOnce

__all__ = ["CountingAsgi", "CountingInterceptor", "InFlight"]


class InFlight:
    def __init__(self) -> None:
        self.started = 0
        self.finished = 0

    @property
    def now(self) -> int:
        return self.started - self.finished

    def snapshot(self) -> tuple[int, int]:
        return self.now, self.finished

    def report(self, snapshot: tuple[int, int], door: str) -> dict[str, int]:
        at_signal, finished_before = snapshot
        return {f"{door}_in_flight_at_signal": at_signal, f"{door}_completed": self.finished - finished_before,
                f"{door}_unfinished": self.now}  # fmt: skip


class CountingAsgi:
    """ASGI wrapper counting HTTP requests from their start to the end of their response (or failure)."""

    def __init__(self, app: Callable[..., Awaitable[None]], counter: InFlight) -> None:
        self._app = app
        self._counter = counter

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        self._counter.started += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self._counter.finished += 1


class CountingInterceptor(grpc.aio.ServerInterceptor):
    """Counts gRPC calls from their start to their last message, whatever their kind."""

    def __init__(self, counter: InFlight) -> None:
        self._counter = counter
        self._wrapped = WrapOnce()

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = getattr(handler_call_details, "method", "")
        return self._wrapped.get(handler, method, lambda: self._wrap(handler))

    def _wrap(self, handler: Any) -> Any:
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                return handler._replace(**{kind: self._counted(behaviour)})
        return handler

    def _counted(self, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        counter = self._counter
        if inspect.isasyncgenfunction(behaviour):
            async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
                counter.started += 1
                try:
                    async for message in behaviour(request, context):
                        yield message
                finally:
                    counter.finished += 1

            return streaming

        async def call(request: Any, context: Any) -> Any:
            counter.started += 1
            try:
                return await behaviour(request, context)
            finally:
                counter.finished += 1

        return call
