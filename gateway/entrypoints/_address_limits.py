"""Limits per client address on both doors: calls not authenticated, and failed authentications.

Every call, on every route and method (unary or streaming: reflection, health ``Watch``), is
charged to its client address when it arrives; the charge is given back only once the call's
token and sender binding verified (``gateway.core.quotas.authenticated``, called by the
verifier). So a call to a public route (``/v1/audit/checkpoints``, ``/v1/demo/citizen-token``,
``/.well-known/jwks.json``, ``/readyz``, gRPC health ...) stays charged whatever
``authorization`` it carries: a header is not a token until it verifies. A call refused by
authentication (401 / ``UNAUTHENTICATED``) is also charged to the address's
failed-authentication allowance, and an address that used it up is refused
(``RATE_LIMITED``, with ``Retry-After`` / ``RetryInfo``) before its token is even read.
The buckets are bounded (``gateway.core.quotas.KeyedBuckets``).

The REST client address is the connection's peer, or the ``X-Forwarded-For`` of a
proxy that uvicorn trusts (``forwarded_allow_ips``, 127.0.0.1 by default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from gateway.core.errors import GatewayError, Reason
from gateway.core.quotas import AddressQuotas, refund_when_authenticated, refunds_ended
from gateway.entrypoints._grpc_security import Continuation, Handler, WrapOnce, around_call
from gateway.entrypoints._grpc_status import abort_with
from gateway.entrypoints._problem import problem_response

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
        try:
            self.quotas.admit(address, now=self.clock())
        except GatewayError as err:
            self.on_refusal(err.reason, "rest")
            await problem_response(err)(scope, receive, send)
            return
        status = 0

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        refund = refund_when_authenticated(lambda: self.quotas.refund(address))
        try:
            await self.app(scope, receive, send_status)
        finally:
            refunds_ended(refund)
            if status == 401:
                self.quotas.failed(address, self.clock())


class GrpcAddressLimits(grpc.aio.ServerInterceptor):
    """The same limits on the gRPC door, for every method and kind (unary and streaming)."""

    def __init__(self, quotas: AddressQuotas, *, clock: Clock, on_refusal: OnRefusal) -> None:
        self.quotas, self.clock, self.on_refusal = quotas, clock, on_refusal
        self._wrapped = WrapOnce()

    async def intercept_service(
        self,
        continuation: Continuation,
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None:
            return handler
        return self._wrapped.get(handler, details.method, lambda: around_call(handler, self._start, self._end))

    async def _start(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        address = peer_address(context.peer() or "")
        try:
            self.quotas.admit(address, now=self.clock())
        except GatewayError as err:
            self.on_refusal(err.reason, "grpc")
            await abort_with(context, err)
        # Set in this call's own task (one per RPC), where the behaviour runs next: it ends with the call.
        refund_when_authenticated(lambda: self.quotas.refund(address))
        return request

    def _end(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if context.code() == grpc.StatusCode.UNAUTHENTICATED:
            self.quotas.failed(peer_address(context.peer() or ""), self.clock())
