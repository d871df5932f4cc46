"""The REST door's outermost ASGI layer: framing limits, single-valued headers, and the catch-all.

* headers over ``max_header_bytes`` → 431 ``HEADERS_TOO_LARGE``;
* a single-valued header given twice → 400 ``DUPLICATE_HEADER`` (the same refusal as on gRPC);
* the body is counted as it arrives, whatever the framing (``Content-Length``, chunked): past
  ``max_body_bytes`` the read fails with 413 ``REQUEST_TOO_LARGE`` before anything buffers or
  parses the rest, authenticated or not;
* any exception that escapes the application becomes 500 ``INTERNAL`` in the error model, without
  its text, and one rate-limited JSON log line; nothing is re-raised to the server (which would log
  a plain-text traceback quoting the input).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.core.errors import GatewayError, Reason
from gateway.entrypoints._context import repeated_single_valued
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
    ) -> None:
        self.app, self.max_header_bytes, self.max_body_bytes = app, max_header_bytes, max_body_bytes
        self.on_refusal = on_refusal or (lambda _reason: None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._header_refusal(scope["headers"])
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
            await self.app(scope, self._counting(receive), tracking_send)
        except Exception as exc:  # the catch-all: nothing escapes as a traceback or a bare 500
            err = exc if isinstance(exc, GatewayError) else GatewayError(Reason.INTERNAL)
            if not isinstance(exc, GatewayError):
                unexpected_errors().record(exc, "rest")
            if not started:
                await problem_response(err)(scope, receive, send)

    def _header_refusal(self, headers: list[tuple[bytes, bytes]]) -> GatewayError | None:
        if sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes:
            return GatewayError(Reason.HEADERS_TOO_LARGE)
        repeated = repeated_single_valued(k.decode("latin-1") for k, _ in headers)
        if repeated is not None:
            return GatewayError(Reason.DUPLICATE_HEADER, f"The header {repeated} is given more than once")
        for k, v in headers:
            if k == b"content-length" and (not v.isdigit() or int(v) > self.max_body_bytes):
                return GatewayError(Reason.REQUEST_TOO_LARGE)
        return None

    def _counting(self, receive: Any) -> Any:
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    self.on_refusal(Reason.REQUEST_TOO_LARGE)
                    raise GatewayError(Reason.REQUEST_TOO_LARGE)
            return message

        return counted
