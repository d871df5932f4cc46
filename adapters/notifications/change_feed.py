"""Reading a registry's change-event stream (a ``change_events`` rpc) over gRPC.

One channel per registry; each ``watch`` is one server-streaming call from the cursor on. The
stream's messages are parsed as OUR contract (unknown fields dropped, as for look-up answers).
Failures end the iteration with ``ConnectionError`` (no text of the registry's: the reader
reconnects with backoff from its persisted cursor).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import Message

from gateway.core.change_events import EventStream
from gateway.core.proto_typing import discard_unknown_fields

__all__ = ["GrpcChangeFeed"]


class GrpcChangeFeed:
    """``gateway.core.ports.ChangeFeed`` for a gRPC registry at ``target`` (host:port)."""

    def __init__(self, target: str, stream: EventStream, *, max_message_bytes: int = 4 * 1024 * 1024) -> None:
        self._stream = stream
        self._channel = grpc.aio.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_permit_without_calls", 1)])  # fmt: skip
        envelope = stream.envelope_cls

        def read(raw: bytes) -> Message:
            message = envelope.FromString(raw)
            discard_unknown_fields(message)
            return message

        self._call: grpc.aio.UnaryStreamMultiCallable[Message, Message] = self._channel.unary_stream(
            stream.grpc_path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=read,
        )  # fmt: skip

    async def watch(self, after: int) -> AsyncIterator[Message]:
        request = self._stream.request_cls(**{self._stream.cursor_field: after})
        call = self._call(request)
        try:
            async for envelope in call:
                yield envelope
        except grpc.aio.AioRpcError as exc:
            raise ConnectionError(f"change stream ended: {exc.code().name}") from None
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()
