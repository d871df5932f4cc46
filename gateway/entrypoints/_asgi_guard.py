"""The REST door's outermost ASGI layer: framing limits, single-valued headers, and the catch-all.

* headers over ``max_header_bytes`` → 431 ``HEADERS_TOO_LARGE``;
* a single-valued header given twice, or beside its ``-bin`` variant → 400 ``DUPLICATE_HEADER``
  (the same refusal as on gRPC);
* a ``Content-Length`` that is not ASCII digits (optional whitespace around them is stripped, as
  RFC 9110 allows) → 400 ``INVALID_ARGUMENT``; above ``max_body_bytes`` → 413;
* a ``Transfer-Encoding`` other than ``chunked`` (``gzip, chunked`` ...) → 400: a proxy may decode
  what we would read raw;
* a body on ``GET`` or ``HEAD`` (a ``Content-Length`` above 0 or any ``Transfer-Encoding``) → 400:
  such a body has no defined meaning, and a proxy may drop or forward it;
* the body is counted as it arrives, whatever the framing (``Content-Length``, chunked): past
  ``max_body_bytes`` (or the route's own limit, ``body_limits``: the bulk look-up's) the read
  fails with 413 ``REQUEST_TOO_LARGE`` before anything buffers or
  parses the rest, authenticated or not;
* any exception that escapes the application becomes 500 ``INTERNAL`` in the error model, without
  its text, and one rate-limited JSON log line; nothing is re-raised to the server (which would log
  a plain-text traceback quoting the input).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.core.errors import GatewayError, Reason
from gateway.entrypoints._context import binary_variant, repeated_single_valued
from gateway.entrypoints._problem import problem_response
from observability.logs import unexpected_errors

__all__ = ["FrontDoorGuard"]


class FrontDoorGuard:
    def __init__(
        self,
        app: Any,
        *,
        max_header_bytes: int,
        max_body_bytes: int,
        on_refusal: Callable[[Reason], None] | None = None,
        body_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app, self.max_header_bytes, self.max_body_bytes = app, max_header_bytes, max_body_bytes
        self.on_refusal = on_refusal or (lambda _reason: None)
        self.body_limits = dict(body_limits or {})   # exact path -> its own body limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.body_limits.get(scope.get("path", ""), self.max_body_bytes)
        refusal = self._header_refusal(scope["headers"], limit) or _body_framing_refusal(scope)
        if refusal is not None:
            self.on_refusal(refusal.reason)
            await problem_response(refusal)(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, self._counting(receive, limit), tracking_send)
        except Exception as exc:  # the catch-all: nothing escapes as a traceback or a bare 500
            err = exc if isinstance(exc, GatewayError) else GatewayError(Reason.INTERNAL)
            if not isinstance(exc, GatewayError):
                unexpected_errors().record(exc, "rest")
            if not started:
                await problem_response(err)(scope, receive, send)

    def _header_refusal(self, headers: list[tuple[bytes, bytes]], max_body_bytes: int) -> GatewayError | None:
        if sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes:
            return GatewayError(Reason.HEADERS_TOO_LARGE)
        names = [k.decode("latin-1") for k, _ in headers]
        repeated = repeated_single_valued(names)
        if repeated is not None:
            return GatewayError(Reason.DUPLICATE_HEADER, f"The header {repeated} is given more than once")
        binary = binary_variant(names)
        if binary is not None:
            return GatewayError(Reason.DUPLICATE_HEADER, f"The header {binary} is not accepted beside its text form")
        for k, v in headers:
            if k == b"content-length":
                length = v.strip(b" \t")
                if not (length.isascii() and length.isdigit()) or len(length) > 20:
                    return GatewayError(Reason.INVALID_ARGUMENT, "Content-Length is not a decimal number")
                if int(length) > max_body_bytes:
                    return GatewayError(Reason.REQUEST_TOO_LARGE)
        return None

    def _counting(self, receive: Any, max_body_bytes: int) -> Any:
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_body_bytes:
                    self.on_refusal(Reason.REQUEST_TOO_LARGE)
                    raise GatewayError(Reason.REQUEST_TOO_LARGE)
            return message

        return counted


def _body_framing_refusal(scope: Any) -> GatewayError | None:
    headers = dict(scope["headers"])   # single-valued ones are unique by now
    coding = headers.get(b"transfer-encoding")
    if coding is not None and coding.strip(b" \t").lower() != b"chunked":
        return GatewayError(Reason.INVALID_ARGUMENT, "Transfer-Encoding other than chunked is not accepted")
    length = headers.get(b"content-length", b"0").strip(b" \t")
    if scope["method"] in ("GET", "HEAD") and (coding is not None or int(length or b"0") > 0):
        return GatewayError(Reason.INVALID_ARGUMENT, f"A {scope['method']} request carries no body")
    return None
