"""Refusals on the gRPC door: a ``google.rpc.Status`` with an ``ErrorInfo`` detail (reason, domain, metadata).

Used by the door's handlers (``grpc_server``, ``binding``) and by its interceptors (``_grpc_security``).
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.core.errors import DOMAIN, GatewayError, Reason
from observability.logs import unexpected_errors

__all__ = ["abort_unexpected", "abort_with", "rich_status", "status_message"]


def rich_status(err: GatewayError, request_id: str = "") -> grpc.Status:
    return rpc_status.to_status(status_message(err, request_id))


def status_message(err: GatewayError, request_id: str = "") -> status_pb2.Status:
    """The ``google.rpc.Status`` of a refusal: ErrorInfo (reason, domain, metadata), RetryInfo, RequestInfo.

    A call's status on the gRPC door, and an item's status in a bulk look-up's answers (both doors).
    """
    info = error_details_pb2.ErrorInfo(reason=str(err.reason), domain=DOMAIN, metadata=err.metadata)
    details = [any_pb2.Any()]
    details[0].Pack(info)
    if err.retry_after is not None:
        retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=max(1, round(err.retry_after))))
        details.append(any_pb2.Any())
        details[-1].Pack(retry)
    if request_id:
        details.append(any_pb2.Any())
        details[-1].Pack(error_details_pb2.RequestInfo(request_id=request_id))
    code = err.info.grpc.value[0]
    return status_pb2.Status(code=code, message=err.detail, details=details)


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], err: GatewayError, request_id: str = "") -> None:
    status = rich_status(err, request_id)
    trailing = (*status.trailing_metadata, ("x-request-id", request_id)) if request_id else status.trailing_metadata
    await context.abort(status.code, status.details, trailing_metadata=trailing)


async def abort_unexpected(
    context: grpc.aio.ServicerContext[Any, Any], exc: Exception, request_id: str = ""
) -> None:
    """An exception we did not plan for: INTERNAL in the error model, its text only in a rate-limited log."""
    if isinstance(exc, grpc.aio.AbortError):
        raise exc   # an abort already on its way out
    unexpected_errors().record(exc, "grpc")
    await abort_with(context, GatewayError(Reason.INTERNAL), request_id)
