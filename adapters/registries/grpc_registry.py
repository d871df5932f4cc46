"""Adapter for a registry that speaks the contract natively over gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message
from opentelemetry import trace

from adapters.registries._trace import client_span, outgoing_metadata
from gateway.core.contracts import BatchMethod, Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.proto_typing import discard_unknown_fields

__all__ = ["GrpcRegistryAdapter", "map_grpc_error"]

_CODE_REASONS: dict[grpc.StatusCode, Reason] = {
    grpc.StatusCode.NOT_FOUND: Reason.SUBJECT_NOT_FOUND,
    grpc.StatusCode.DEADLINE_EXCEEDED: Reason.REGISTRY_TIMEOUT,
    grpc.StatusCode.UNAVAILABLE: Reason.REGISTRY_UNAVAILABLE,
    grpc.StatusCode.CANCELLED: Reason.REGISTRY_UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Reason.REGISTRY_UNAVAILABLE,
    grpc.StatusCode.INVALID_ARGUMENT: Reason.INVALID_ARGUMENT,
}


def _contract_reader(cls: type[Message]) -> Callable[[bytes], Message]:
    """Parse an answer as OUR contract: fields of a newer registry contract are dropped here, before
    minimisation and audit, so the fields recorded are exactly the fields that leave."""

    def read(raw: bytes) -> Message:
        message = cls.FromString(raw)
        discard_unknown_fields(message)
        return message

    return read


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def map_grpc_error(code: grpc.StatusCode) -> Reason:
    """Every status a registry can answer becomes a registry reason; anything odd is a bad answer."""
    return _CODE_REASONS.get(code, Reason.REGISTRY_BAD_RESPONSE)


class GrpcRegistryAdapter:
    """One HTTP/2 channel (multiplexed) with a bound on concurrent calls, which is also the bulkhead."""

    def __init__(
        self,
        target: str,
        operations: Mapping[str, Operation],
        *,
        max_concurrency: int = 256,
        max_message_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self._target = target
        self._host, _, port = target.rpartition(":")
        self._port = int(port) if port.isdigit() else 0
        self._ops = dict(operations)           # method name -> operation
        self._limit = asyncio.Semaphore(max_concurrency)
        self._options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            # Answers are not accepted compressed: gRPC core inflates a message whole before the
            # size check, so a 4 MB gzip answer could cost gigabytes. Identity only is advertised.
            ("grpc.compression_enabled_algorithms_bitset", 1),
            ("grpc.enable_retries", 0),
            ("grpc.keepalive_time_ms", 30_000),
            # Reconnect soon after a registry comes back (the default backoff grows to 120 s).
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2_000),
        ]
        self._channel: grpc.aio.Channel | None = None
        self._callables: dict[str, Any] = {}

    def _callable(self, method: str) -> Any:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._target, options=self._options)
        fn = self._callables.get(method)
        if fn is None:
            op = self._ops[method]
            fn = self._channel.unary_unary(
                op.grpc_path,
                request_serializer=op.request_cls.SerializeToString,
                response_deserializer=_contract_reader(op.response_cls),
            )
            self._callables[method] = fn
        return fn

    async def call(
        self, method: str, request: Message, *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> Message:
        op = self._ops[method]
        attributes: dict[str, str | int] = {"rpc.system": "grpc", "rpc.service": op.service, "rpc.method": op.method,
                      "server.address": self._host, "server.port": self._port}
        with client_span(op.full_name, attributes) as span:
            response = await self._call(method, request, timeout=timeout, metadata=outgoing_metadata(metadata))
            span.set_attribute("rpc.grpc.status_code", 0)
            return response

    async def _call(
        self, method: str, request: Message, *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> Message:
        fn = self._callable(method)
        try:
            async with asyncio.timeout(timeout):
                async with self._limit:
                    response: Message = await fn(request, timeout=timeout, metadata=tuple(metadata))
                    return response
        except TimeoutError:
            raise GatewayError(Reason.REGISTRY_TIMEOUT) from None
        except grpc.aio.AioRpcError as exc:
            trace.get_current_span().set_attribute("rpc.grpc.status_code", exc.code().value[0])
            raise GatewayError(map_grpc_error(exc.code())) from None

    async def call_batch(
        self, batch: BatchMethod, requests: Sequence[Message], *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> list[Message | GatewayError]:
        """One call of a batch method (``batch_of``): each request's answer, or its refusal as the
        single method would have given it (the item's ``google.rpc.Status`` code, mapped once, here)."""
        fn = self._callables.get(batch.grpc_path)
        if fn is None:
            if self._channel is None:
                self._channel = grpc.aio.insecure_channel(self._target, options=self._options)
            fn = self._callables[batch.grpc_path] = self._channel.unary_unary(
                batch.grpc_path, request_serializer=batch.request_cls.SerializeToString,
                response_deserializer=_contract_reader(batch.response_cls),
            )
        service, _, name = batch.grpc_path[1:].rpartition("/")
        attributes: dict[str, str | int] = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name,
                                            "server.address": self._host, "server.port": self._port,
                                            "passerelle.batch_size": len(requests)}
        with client_span(f"{service}/{name}", attributes) as span:
            try:
                async with asyncio.timeout(timeout), self._limit:
                    response = await fn(batch.request_cls(**{batch.requests_field: list(requests)}),
                                        timeout=timeout, metadata=tuple(outgoing_metadata(metadata)))
            except TimeoutError:
                raise GatewayError(Reason.REGISTRY_TIMEOUT) from None
            except grpc.aio.AioRpcError as exc:
                span.set_attribute("rpc.grpc.status_code", exc.code().value[0])
                raise GatewayError(map_grpc_error(exc.code())) from None
            span.set_attribute("rpc.grpc.status_code", 0)
        results = list(getattr(response, batch.results_field))
        if len(results) != len(requests):
            raise GatewayError(Reason.REGISTRY_BAD_RESPONSE, "The batch answer does not hold one result per request")
        return [self._result(batch, r) for r in results]

    @staticmethod
    def _result(batch: BatchMethod, result: Message) -> Message | GatewayError:
        if result.HasField(batch.answer_field):
            answer: Message = getattr(result, batch.answer_field)
            return answer
        if result.HasField(batch.error_field):
            code = _CODES.get(getattr(result, batch.error_field).code, grpc.StatusCode.UNKNOWN)
            return GatewayError(map_grpc_error(code))
        return GatewayError(Reason.REGISTRY_BAD_RESPONSE, "A batch result holds neither an answer nor a status")

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
