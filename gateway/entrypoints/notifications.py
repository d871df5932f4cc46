"""Stream delivery of change notifications: gRPC ``passerelle.gateway.v1.Subscriptions/StreamEvents``
(server streaming; a binding serves unary methods only, so it is registered apart, like bulk look-ups).

The agency authenticates as for any call, names one of its stream subscriptions, and receives its
events as they are due (``gateway.application.notification_delivery.Deliverer.stream``), each
recorded before it is written; it acknowledges them with ``AckEvents`` (either door). The token is
checked again before each event: a revoked or expired token ends the stream with its reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from gateway._pb.passerelle.gateway.v1 import subscriptions_pb2 as pb
from gateway.application.notification_delivery import Deliverer
from gateway.application.notifications import SERVICE, SubscriptionsApi
from gateway.application.service import Call
from gateway.core.errors import GatewayError, Reason
from gateway.core.pipeline import ExchangePipeline
from gateway.entrypoints._context import call_context, echo_id, refuse_bad_request_id
from gateway.entrypoints._grpc_security import admit_grpc_call
from gateway.entrypoints._grpc_status import abort_unexpected, abort_with
from gateway.entrypoints.grpc_server import parse_request

__all__ = ["GRPC_METHOD", "grpc_stream_events"]

GRPC_METHOD = f"/{SERVICE}/StreamEvents"


def grpc_stream_events(pipeline: ExchangePipeline, api: SubscriptionsApi,
                       deliverer: Deliverer) -> Callable[[grpc.aio.Server], list[str]]:  # fmt: skip
    """An ``extra`` for ``create_grpc_server``: the streaming handler of ``Subscriptions/StreamEvents``."""

    async def stream(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        md = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        ctx = call_context("grpc", md.get, None)   # a stream lives as long as the agency reads it
        context.set_trailing_metadata((("x-request-id", echo_id(ctx)),))
        try:
            admit_grpc_call(pipeline, context, ctx)
            refuse_bad_request_id(ctx)   # as the binding does for the unary methods
            principal = await pipeline.authenticate_async(ctx, kind="consumer")
            request = parse_request(pb.StreamEventsRequest, raw)
            assert isinstance(request, pb.StreamEventsRequest)
            sub = await api.owned(Call(principal, ctx), request.subscription_id)
            if sub.mode != "stream":
                raise GatewayError(Reason.INVALID_ARGUMENT, "not a stream subscription", field="subscription_id")
            if request.max_unacked > 1000:
                raise GatewayError(Reason.INVALID_ARGUMENT, "max_unacked must be within 0..1000", field="max_unacked")
        except GatewayError as err:
            await abort_with(context, err, echo_id(ctx))
            return
        try:
            def check() -> None:
                pipeline.check_still_authenticated(principal, "grpc")

            async for message in deliverer.stream(sub, request.max_unacked or 100, check):
                await context.write(message)
        except GatewayError as err:
            await abort_with(context, err, echo_id(ctx))
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:  # the catch-all: INTERNAL without the exception's text
            await abort_unexpected(context, exc, echo_id(ctx))

    handler: grpc.RpcMethodHandler[bytes, pb.NotificationEvent] = grpc.unary_stream_rpc_method_handler(
        stream, response_serializer=pb.NotificationEvent.SerializeToString
    )

    def add(server: grpc.aio.Server) -> list[str]:
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"StreamEvents": handler})])
        return [SERVICE]

    return add
