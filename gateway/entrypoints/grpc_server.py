"""The gRPC front door: the registry contracts served generically, plus health and reflection.

Handlers receive raw bytes so that a malformed message is answered
``INVALID_ARGUMENT`` by us rather than a transport error. Refusals carry a
``google.rpc.Status`` with an ``ErrorInfo`` detail (reason, domain, metadata).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection

from gateway.core.contracts import Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.pipeline import ExchangePipeline
from gateway.core.proto_typing import discard_unknown_fields
from gateway.entrypoints._context import call_context, echo_id
from gateway.entrypoints._grpc_security import (
    TRANSPORT_MESSAGE_BYTES,
    TRANSPORT_METADATA_BYTES,
    Handler,
    MessageSizeLimit,
    admit_grpc_call,
)
from gateway.entrypoints._grpc_status import abort_unexpected, abort_with, rich_status

__all__ = ["abort_unexpected", "abort_with", "create_grpc_server", "parse_request", "rich_status"]


#: ``grpc_compression_options`` bitset: bit 0 is identity (no compression).
_IDENTITY_ONLY = 1


_M = TypeVar("_M", bound=Message)


def parse_request(cls: type[_M], raw: bytes) -> _M:
    """The caller's message with fields unknown to our contract dropped: they reach no registry."""
    try:
        message = cls.FromString(raw)
    except (DecodeError, RecursionError):
        raise GatewayError(Reason.INVALID_ARGUMENT, "The request is not a valid protobuf message") from None
    discard_unknown_fields(message)
    return message


def _exchange_handler(pipeline: ExchangePipeline, op: Operation) -> Handler:
    async def handle(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        md = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        ctx = call_context("grpc", md.get, context.time_remaining())
        # Echoed in the trailers: an explicit send of initial metadata costs a transport batch per call.
        context.set_trailing_metadata((("x-request-id", echo_id(ctx)),))
        try:
            admit_grpc_call(pipeline, context, ctx)
            request = parse_request(op.request_cls, raw)
            response = await pipeline.exchange(op, request, ctx)
            discard_unknown_fields(response)   # what leaves is what the audit lists, whatever the adapter kept
            wire: bytes = response.SerializeToString()  # protobuf ships no type information
            return wire
        except GatewayError as err:
            await abort_with(context, err, echo_id(ctx))
        except Exception as exc:  # the catch-all: INTERNAL without the exception's text
            await abort_unexpected(context, exc, echo_id(ctx))
        raise AssertionError("unreachable")

    return grpc.unary_unary_rpc_method_handler(handle)


class _UnknownService(grpc.GenericRpcHandler):
    """Answers any method we do not serve with UNKNOWN_SERVICE in the same error model."""

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        async def handle(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            await abort_with(context, GatewayError(Reason.UNKNOWN_SERVICE))
            return b""

        return grpc.unary_unary_rpc_method_handler(handle)


def _health_handlers(servicer: health.aio.HealthServicer) -> grpc.GenericRpcHandler:
    """The stock health servicer, with requests parsed by us: its own deserializer answers a
    malformed request UNKNOWN with the parser's text."""

    async def check(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        try:
            request = parse_request(health_pb2.HealthCheckRequest, raw)
        except GatewayError as err:
            await abort_with(context, err)
            raise AssertionError("unreachable") from None
        answer = await servicer.Check(request, context)
        wire: bytes = answer.SerializeToString()  # grpc_health ships no type information
        return wire

    async def watch(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            request = parse_request(health_pb2.HealthCheckRequest, raw)
        except GatewayError as err:
            await abort_with(context, err)
            return
        await servicer.Watch(request, context)

    return grpc.method_handlers_generic_handler(
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        {
            "Check": grpc.unary_unary_rpc_method_handler(check),
            "Watch": grpc.unary_stream_rpc_method_handler(
                watch, response_serializer=health_pb2.HealthCheckResponse.SerializeToString
            ),
        },
    )


ExtraServices = Callable[[grpc.aio.Server], Awaitable[list[str]] | list[str]]


async def create_grpc_server(
    pipeline: ExchangePipeline,
    operations: Mapping[str, Operation],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_request_bytes: int = 64 * 1024,
    extra: list[ExtraServices] | None = None,
    interceptors: list[grpc.aio.ServerInterceptor] | None = None,
    tls: tuple[grpc.ServerCredentials, int, bool] | None = None,
    bound_ports: dict[str, int] | None = None,
    method_limits: Mapping[str, int] | None = None,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Build and start the server; return it with its bound port and health servicer.

    ``tls`` = (credentials, port, keep the plaintext port): adds a TLS port; ``bound_ports``
    receives ``grpc`` and ``grpc_tls``; ``method_limits``: methods with a request size limit of
    their own ("/package.Service/Method" -> bytes: a bulk look-up's).
    """
    # Innermost: the caller's address is charged (outer interceptors) before its message is judged.
    size_limit = MessageSizeLimit(max_request_bytes, lambda reason: pipeline.record_security_event(reason, "grpc"),
                                  method_limits)
    ceiling = max(TRANSPORT_MESSAGE_BYTES, max_request_bytes, *(method_limits or {}).values())
    server = grpc.aio.server(
        interceptors=[*(interceptors or ()), size_limit],
        options=[
            # Our limit is MessageSizeLimit's (REQUEST_TOO_LARGE with ErrorInfo); the transport's is a ceiling.
            ("grpc.max_receive_message_length", ceiling),
            # Requests are a few hundred bytes; gRPC core inflates a compressed message WHOLE before
            # checking the size limit (a 60 KB gzip bomb costs 60 MB per call in flight). Identity
            # only: a compressed request is refused before inflation, UNIMPLEMENTED with
            # grpc-accept-encoding: identity (the gRPC spec's answer to an unsupported encoding).
            ("grpc.compression_enabled_algorithms_bitset", _IDENTITY_ONLY),
            ("grpc.max_metadata_size", TRANSPORT_METADATA_BYTES),
            ("grpc.absolute_max_metadata_size", TRANSPORT_METADATA_BYTES),
            ("grpc.so_reuseport", 1),
        ]
    )
    by_service: dict[str, dict[str, Handler]] = {}
    for op in operations.values():
        by_service.setdefault(op.service, {})[op.method] = _exchange_handler(pipeline, op)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(name, handlers) for name, handlers in by_service.items()]
    )
    names = list(by_service)
    for add in extra or []:
        result = add(server)
        names += await result if isinstance(result, Awaitable) else result
    health_servicer = health.aio.HealthServicer()
    server.add_generic_rpc_handlers([_health_handlers(health_servicer)])
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    names += [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    server.add_generic_rpc_handlers([_UnknownService()])
    bound = server.add_insecure_port(f"{host}:{port}") if tls is None or tls[2] else 0
    tls_bound = server.add_secure_port(f"{host}:{tls[1]}", tls[0]) if tls else 0
    if bound_ports is not None:
        bound_ports.update(grpc=bound, grpc_tls=tls_bound)
    await server.start()
    return server, bound, health_servicer
