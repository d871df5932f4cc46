"""Server spans and duration metrics at the front doors, without stock instrumentation.

* ``GrpcServerTelemetry``: a ``grpc.aio`` server interceptor (unary calls);
* ``AsgiTelemetry``: a plain ASGI middleware (no ``BaseHTTPMiddleware``).

Each takes the caller's W3C ``traceparent``/``tracestate`` as the parent, starts
one SERVER span that is current while the handler runs (the pipeline's stage
spans and the registry call become its children), and records the
semantic-convention duration histogram. Names and labels come from what the
gateway knows: the gRPC method when it is one we serve (else ``_OTHER``), the
REST *route template* (``/v1/population/persons/{national_id}``), never the URL,
which holds national ids.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeAlias

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from observability.metrics import GatewayMetrics

_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"   # a string: grpc's runtime class is not generic

__all__ = ["FASTAPI_TELEMETRY_OFF", "AsgiTelemetry", "GrpcServerTelemetry"]

#: FastAPI's built-in telemetry off: it costs per request, names spans after URLs and logs request
#: values on validation errors (national ids). ``AsgiTelemetry`` does the job instead.
FASTAPI_TELEMETRY_OFF: Any = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}

_tracer = trace.get_tracer("passerelle.frontdoor")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TRACE_HEADERS = (b"traceparent", b"tracestate")
_TRACE_KEYS = frozenset({"traceparent", "tracestate"})


def _status_name(code: Any) -> str:
    if isinstance(code, grpc.StatusCode):
        return str(code.name)  # grpc ships no type information
    if isinstance(code, int):
        for c in grpc.StatusCode:
            if c.value[0] == code:
                return str(c.name)
    return "OK" if code is None else "UNKNOWN"


class GrpcServerTelemetry(grpc.aio.ServerInterceptor):
    """SERVER span + ``rpc.server.call.duration`` per unary call.

    ``known`` gives the "/pkg.Service/Method" paths served; it is read at the
    first call, once every feature has registered its services.
    """

    def __init__(
        self, known: Callable[[], Collection[str]], metrics: GatewayMetrics | None = None, *, system: str = "grpc"
    ) -> None:
        self._known_source = known
        self._known: frozenset[str] | None = None
        self._wrapped: dict[str, _Handler] = {}   # per method, built once
        self._metrics = metrics
        self._system = system

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = await continuation(details)
        if handler is None:
            return handler
        # Unary calls, and server-streaming ones whose behaviour is a coroutine writing with context.write
        # (bulk look-ups, change-event streams): one span and one rpc.server.call.duration each.
        if handler.unary_unary is not None:
            kind, make = "unary_unary", grpc.unary_unary_rpc_method_handler
        elif handler.unary_stream is not None and not inspect.isasyncgenfunction(handler.unary_stream):
            kind, make = "unary_stream", grpc.unary_stream_rpc_method_handler
        else:
            return handler
        if self._known is None:
            self._known = frozenset(self._known_source())
        method = details.method if details.method in self._known else "/_OTHER/_OTHER"
        key = details.method if method != "/_OTHER/_OTHER" else method
        wrapped = self._wrapped.get(key)
        if wrapped is None or getattr(wrapped, kind) is None:
            wrapped = make(
                self._wrap(getattr(handler, kind), method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            if method != "/_OTHER/_OTHER":   # unknown methods get a fresh handler each time
                self._wrapped[key] = wrapped
        return wrapped

    def _wrap(self, inner: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Any]:
        service, _, name = method[1:].partition("/")
        attributes = {"rpc.system": self._system, "rpc.service": service, "rpc.method": name}

        async def behaviour(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            carrier = {k: v for k, v in (context.invocation_metadata() or ()) if k in _TRACE_KEYS}
            span = _tracer.start_span(
                method[1:], context=propagate.extract(carrier) if carrier else None, kind=SpanKind.SERVER,
                attributes=attributes,
            )
            status = "OK"
            try:
                with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
                    try:
                        result = await inner(request, context)
                        code = context.code()   # a status set without raising (a stream ended CANCELLED ...)
                        if code is not None and code != grpc.StatusCode.OK:
                            status = _status_name(code)
                        return result
                    except BaseException as exc:
                        code = context.code()
                        # No status set and cancelled: the client left (the usual end of a stream), not an error.
                        status = (_status_name(code) if code is not None
                                  else "CANCELLED" if isinstance(exc, asyncio.CancelledError) else "UNKNOWN")
                        raise
                    finally:
                        span.set_attribute("rpc.grpc.status_code", _code_value(status))
                        if status != "OK":
                            span.set_status(StatusCode.ERROR, status)
            finally:
                if self._metrics is not None:
                    self._metrics.rpc_duration.record(
                        time.perf_counter() - started, {**attributes, "rpc.grpc.status_code": _code_value(status)}
                    )

        return behaviour


def _code_value(name: str) -> int:
    return int(grpc.StatusCode[name].value[0]) if name in grpc.StatusCode.__members__ else 2


class AsgiTelemetry:
    """SERVER span + ``http.server.request.duration`` per HTTP request.

    ``untraced`` paths (scrapes, probes) are measured but start no span.
    """

    def __init__(
        self,
        app: Any,
        *,
        metrics: GatewayMetrics | None = None,
        untraced: Collection[str] = ("/metrics", "/healthz", "/readyz"),
    ) -> None:
        self.app = app
        self._metrics = metrics
        self._untraced = frozenset(untraced)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            if scope["path"] in self._untraced:
                await self.app(scope, receive, send_status)
            else:
                await self._traced(scope, receive, send_status, method, lambda: status)
        finally:
            if self._metrics is not None:
                self._metrics.http_duration.record(
                    time.perf_counter() - started,
                    {
                        "http.request.method": method,
                        "http.route": _route(scope),
                        "http.response.status_code": status,
                    },
                )

    async def _traced(
        self, scope: dict[str, Any], receive: Any, send: Any, method: str, status: Callable[[], int]
    ) -> None:
        carrier = {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in _TRACE_HEADERS}
        span = _tracer.start_span(
            method,
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.scheme": scope.get("scheme", "http")},
        )
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            try:
                await self.app(scope, receive, send)
            finally:
                route = _route(scope)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status())
                if status() >= 500:
                    span.set_status(StatusCode.ERROR, str(status()))


def _route(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", "")
    return path if isinstance(path, str) else ""
