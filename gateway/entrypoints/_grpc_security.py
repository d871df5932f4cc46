"""gRPC front-door security: TLS credentials, the caller's certificate thumbprint, the metadata and
message caps, and a way to wrap any kind of method handler (unary or streaming)."""

from __future__ import annotations

import inspect
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeAlias

import grpc
from cachetools import LRUCache

from gateway.core.cnf import cert_thumbprint
from gateway.core.errors import GatewayError, Reason
from gateway.core.pipeline import CallContext, ExchangePipeline
from gateway.entrypoints._context import binary_variant, repeated_single_valued
from gateway.entrypoints._grpc_status import abort_with

__all__ = [
    "MAX_METADATA_BYTES",
    "TRANSPORT_MESSAGE_BYTES",
    "TRANSPORT_METADATA_BYTES",
    "Continuation",
    "Handler",
    "MessageSizeLimit",
    "WrapOnce",
    "admit_grpc_call",
    "around_call",
    "grpc_tls",
    "peer_cert_sha256",
    "server_credentials",
]

#: A method handler of the generic (bytes in, bytes out) kind we register, and an interceptor's next step.
#: (Strings: grpc's runtime classes are not generic; the types are its stubs'.)
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"

#: Our own cap on a call's metadata, answered HEADERS_TOO_LARGE in the error model (as on REST).
MAX_METADATA_BYTES = 16 * 1024
#: The transport's hard cap, above ours so that oversized calls reach us and get a reason code.
TRANSPORT_METADATA_BYTES = 128 * 1024
#: The transport's hard cap on one message (``grpc.max_receive_message_length``). Our own limit,
#: ``max_request_bytes``, is applied by ``MessageSizeLimit`` in the error model (REQUEST_TOO_LARGE with
#: ErrorInfo, as REST's 413); only a message above this ceiling is refused by grpcio itself
#: (RESOURCE_EXHAUSTED without ErrorInfo). It bounds what one call may buffer before we see it.
TRANSPORT_MESSAGE_BYTES = 1024 * 1024


def server_credentials(cert: Path, key: Path, client_ca: Path | None) -> grpc.ServerCredentials:
    """TLS for the gRPC door; with ``client_ca``, every client must present a certificate it signed."""
    ca = client_ca.read_bytes() if client_ca else None
    return grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())], root_certificates=ca,
                                       require_client_auth=ca is not None)


@lru_cache(maxsize=1024)
def _thumbprint(pem: bytes) -> str:
    return cert_thumbprint(ssl.PEM_cert_to_DER_cert(pem.decode("ascii")))


def peer_cert_sha256(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """``x5t#S256`` of the verified client certificate, or '' on a connection without one."""
    pem = next(iter(context.auth_context().get("x509_pem_cert", ())), None)
    return _thumbprint(pem) if pem else ""


def admit_grpc_call(pipeline: ExchangePipeline, context: grpc.aio.ServicerContext[Any, Any], ctx: CallContext) -> None:
    """Refuse oversized metadata and repeated single-valued keys (security events, as on REST),
    and record the client certificate's thumbprint."""
    metadata = context.invocation_metadata() or ()
    if sum(len(k) + len(v) for k, v in metadata) > MAX_METADATA_BYTES:
        pipeline.record_security_event(Reason.HEADERS_TOO_LARGE, "grpc")
        raise GatewayError(Reason.HEADERS_TOO_LARGE)
    repeated = repeated_single_valued(k for k, _ in metadata)
    if repeated is not None:
        pipeline.record_security_event(Reason.DUPLICATE_HEADER, "grpc")
        raise GatewayError(Reason.DUPLICATE_HEADER, f"The header {repeated} is given more than once")
    binary = binary_variant(k for k, _ in metadata)
    if binary is not None:
        pipeline.record_security_event(Reason.DUPLICATE_HEADER, "grpc")
        raise GatewayError(Reason.DUPLICATE_HEADER, f"The header {binary} is not accepted beside its text form")
    ctx.peer_cert_sha256 = peer_cert_sha256(context)


def grpc_tls(config: Any, port: int | None = None) -> tuple[grpc.ServerCredentials, int, bool] | None:
    """The ``tls`` argument of ``create_grpc_server`` from ``[gateway.tls]`` (None when absent)."""
    tls = config.gateway.tls
    if tls is None:
        return None
    creds = server_credentials(config.path(tls.cert), config.path(tls.key),
                               config.path(tls.client_ca) if tls.client_ca else None)
    return creds, tls.port if port is None else port, tls.plaintext


Start = Callable[[Any, "grpc.aio.ServicerContext[Any, Any]"], Awaitable[Any]]
End = Callable[["grpc.aio.ServicerContext[Any, Any]"], None]
#: (request streaming, response streaming) -> the handler's behaviour, and the grpc factory of such handlers.
_BEHAVIOURS = {(False, False): "unary_unary", (False, True): "unary_stream", (True, False): "stream_unary",
               (True, True): "stream_stream"}
_HANDLER_OF: dict[tuple[bool, bool], Callable[..., Handler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler, (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler,
}


class WrapOnce:
    """An interceptor's wrapped handlers, kept per inner handler (and method): a method's handler is
    wrapped once, not on every call. The generic handlers return one handler object per method, so the
    hit rate is all but total; entries are checked by identity and bounded (LRU, ``maxsize``), so handlers
    made per call (unknown methods) neither leak nor collide."""

    def __init__(self, maxsize: int = 1024) -> None:
        self._cache: LRUCache[tuple[int, str], tuple[Handler, Handler]] = LRUCache(maxsize)

    def get(self, handler: Handler, method: str, make: Callable[[], Handler]) -> Handler:
        key = (id(handler), method)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is handler:
            return hit[1]
        wrapped = make()
        self._cache[key] = (handler, wrapped)
        return wrapped


def around_call(handler: Handler, start: Start, end: End | None = None) -> Handler:
    """``handler`` with ``request = await start(request, context)`` before its behaviour and ``end(context)``
    after it, whatever its kind: unary, server streaming (a coroutine or an async generator), client
    streaming (``start`` then gets the request iterator)."""

    def wrap(inner: Callable[..., Any] | None) -> Callable[..., Any] | None:
        if inner is None:
            return None
        if inspect.isasyncgenfunction(inner):
            async def streamed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
                request = await start(request, context)
                try:
                    async for item in inner(request, context):
                        yield item
                finally:
                    if end is not None:
                        end(context)

            return streamed

        async def called(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            request = await start(request, context)
            try:
                result = inner(request, context)
                return await result if inspect.isawaitable(result) else result
            finally:
                if end is not None:
                    end(context)

        return called

    kind = (handler.request_streaming, handler.response_streaming)
    behaviour = wrap(getattr(handler, _BEHAVIOURS[kind]))
    if behaviour is None:
        return handler
    return _HANDLER_OF[kind](behaviour, handler.request_deserializer, handler.response_serializer)


def _size(message: Any) -> int:
    return len(message) if isinstance(message, bytes) else int(message.ByteSize())


class MessageSizeLimit(grpc.aio.ServerInterceptor):
    """``max_request_bytes`` per request message, refused REQUEST_TOO_LARGE in the error model (as REST's 413).

    The transport's own cap is the higher ``TRANSPORT_MESSAGE_BYTES``, so that messages between the two
    reach this check and get a reason code; every method is covered, streaming ones message by message.
    """

    def __init__(
        self, max_request_bytes: int, on_refusal: Callable[[Reason], None], per_method: Mapping[str, int] | None = None
    ) -> None:
        self.max_request_bytes, self.on_refusal = max_request_bytes, on_refusal
        self.per_method = dict(per_method or {})   # "/package.Service/Method" -> its own limit (bulk look-ups)
        self._wrapped = WrapOnce()

    async def intercept_service(
        self,
        continuation: Continuation,
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None:
            return handler
        return self._wrapped.get(handler, details.method, lambda: self._wrap(handler, details.method))

    def _wrap(self, handler: Handler, method: str) -> Handler:
        if handler.request_streaming:
            return around_call(handler, self._stream_start)
        limit = self.per_method.get(method, self.max_request_bytes)

        async def start(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if _size(request) > limit:
                await self._refuse(context)
            return request

        return around_call(handler, start)

    async def _stream_start(self, requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async def checked() -> AsyncIterator[Any]:
            async for request in requests:
                if _size(request) > self.max_request_bytes:
                    await self._refuse(context)
                yield request

        return checked()

    async def _refuse(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.on_refusal(Reason.REQUEST_TOO_LARGE)
        await abort_with(context, GatewayError(Reason.REQUEST_TOO_LARGE))
