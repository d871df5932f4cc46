"""Limits per client address on both doors: calls without a token, and failed authentications.

A call that carries no token (``/v1/audit/checkpoints``, ``/v1/demo/citizen-token``,
``/.well-known/jwks.json``, ``/readyz``, gRPC health ...) is charged to its client
address; a call refused by authentication (401 / ``UNAUTHENTICATED``) is charged to
the address's failed-authentication allowance, and an address that used it up is
refused (``RATE_LIMITED``, with ``Retry-After`` / ``RetryInfo``) before its token is
even read. The buckets are bounded (``gateway.core.quotas.KeyedBuckets``).

The REST client address is the connection's peer, or the ``X-Forwarded-For`` of a
proxy that uvicorn trusts (``forwarded_allow_ips``, 127.0.0.1 by default).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from gateway.core.errors import GatewayError, Reason
from gateway.core.quotas import AddressQuotas

__all__ = ["AsgiAddressLimits", "GrpcAddressLimits", "peer_address"]

Clock = Callable[[], float]
OnRefusal = Callable[[Reason, str], None]


def peer_address(peer: str) -> str:
    """The address of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``), without its port."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return peer


class AsgiAddressLimits:
    """ASGI middleware applying ``AddressQuotas`` to every HTTP request."""

    def __init__(self, app: Any, *, quotas: AddressQuotas, clock: Clock, on_refusal: OnRefusal) -> None:
        self.app, self.quotas, self.clock, self.on_refusal = app, quotas, clock, on_refusal

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = (scope.get("client") or ("",))[0]
        has_token = any(k == b"authorization" for k, _ in scope["headers"])
        try:
            self.quotas.admit(address, has_token=has_token, now=self.clock())
        except GatewayError as err:
            from gateway.entrypoints.rest import problem_response

            self.on_refusal(err.reason, "rest")
            await problem_response(err)(scope, receive, send)
            return
        status = 0

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if status == 401:
                self.quotas.failed(address, self.clock())


class GrpcAddressLimits(grpc.aio.ServerInterceptor):
    """The same limits on the gRPC door (unary calls: every method the gateway serves)."""

    def __init__(self, quotas: AddressQuotas, *, clock: Clock, on_refusal: OnRefusal) -> None:
        self.quotas, self.clock, self.on_refusal = quotas, clock, on_refusal

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        metadata = details.invocation_metadata or ()  # type: ignore[attr-defined]
        has_token = any(k == "authorization" for k, _ in metadata)
        return grpc.unary_unary_rpc_method_handler(
            self._wrap(handler.unary_unary, has_token),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, inner: Callable[..., Awaitable[Any]], has_token: bool) -> Callable[..., Awaitable[Any]]:
        async def behaviour(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            address = peer_address(context.peer() or "")
            try:
                self.quotas.admit(address, has_token=has_token, now=self.clock())
            except GatewayError as err:
                from gateway.entrypoints.grpc_server import abort_with

                self.on_refusal(err.reason, "grpc")
                await abort_with(context, err)
            try:
                return await inner(request, context)
            finally:
                if context.code() == grpc.StatusCode.UNAUTHENTICATED:
                    self.quotas.failed(address, self.clock())

        return behaviour
