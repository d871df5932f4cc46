"""Adapter for a registry that speaks its own REST/JSON dialect.

The dialect's request and answer shapes are declared in configuration
(``RestOperationSpec``): where each contract field is found in the answer and
how it is converted. The mapped value is built as proto3 JSON and parsed into
the contract's message, so an answer that does not fit the contract is a
``REGISTRY_BAD_RESPONSE``, never a half-filled message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from google.protobuf import json_format
from google.protobuf.message import Message
from httpx_aiohttp import AiohttpTransport
from opentelemetry import trace

from adapters.registries._trace import client_span, outgoing_metadata
from gateway.core.contracts import Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.proto_typing import discard_unknown_fields
from gateway.core.strict_json import loads_strict

__all__ = ["FieldMapping", "RestOperationSpec", "RestRegistryAdapter"]


@dataclass(frozen=True)
class FieldMapping:
    """Where a contract field is in the dialect's answer, and how to convert it.

    ``transform``: "" (as is), "string", "int", "date" (ISO date → google.type.Date),
    "money" (decimal string at ``path`` plus currency at ``currency`` → google.type.Money),
    "enum" (dialect value → contract enum name via ``values``).
    """

    path: str
    transform: str = ""
    currency: str = ""
    values: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RestOperationSpec:
    method: str  # HTTP method
    path: str  # "/api/v2/x/{national_id}" — placeholders are request fields
    query: Mapping[str, str] = field(default_factory=dict)  # dialect param -> "{request_field}"
    root: str = ""  # dotted path of the object holding the answer
    response: Mapping[str, FieldMapping] = field(default_factory=dict)  # contract field -> mapping
    not_found_status: tuple[int, ...] = (404,)


class RestRegistryAdapter:
    def __init__(
        self,
        base_url: str,
        operations: Mapping[str, Operation],
        specs: Mapping[str, RestOperationSpec],
        *,
        max_connections: int = 64,
        max_response_bytes: int = 1024 * 1024,
    ) -> None:
        self._ops = dict(operations)
        self._specs = dict(specs)
        self._base_url = base_url
        self._max_connections = max_connections
        self._max_response_bytes = max_response_bytes
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # Stock httpx's pool collapses under concurrency; keep its API on aiohttp's transport.
            limits = httpx.Limits(
                max_connections=self._max_connections, max_keepalive_connections=self._max_connections
            )
            self._client = httpx.AsyncClient(
                base_url=self._base_url, transport=AiohttpTransport(limits=limits), limits=limits
            )
        return self._client

    async def call(
        self, method: str, request: Message, *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> Message:
        spec, url = self._specs[method], httpx.URL(self._base_url)
        # The path template, never the path itself: paths and queries hold national ids.
        attributes: dict[str, str | int] = {
            "http.request.method": spec.method,
            "url.template": spec.path,
            "server.address": url.host,
            "server.port": url.port or (443 if url.scheme == "https" else 80),
        }
        with client_span(f"{spec.method} {spec.path}", attributes):
            return await self._call(method, request, timeout=timeout, metadata=outgoing_metadata(metadata))

    async def _call(
        self, method: str, request: Message, *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> Message:
        op, spec = self._ops[method], self._specs[method]
        values = json_format.MessageToDict(
            request, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        url = spec.path.format_map({k: str(v) for k, v in values.items()})
        params = {k: str(v).format_map({f: str(x) for f, x in values.items()}) for k, v in spec.query.items()}
        headers = {k: v for k, v in metadata if k in ("traceparent", "tracestate", "x-request-id")}
        try:
            async with asyncio.timeout(timeout):
                response = await self._http().request(spec.method, url, params=params, headers=headers, timeout=timeout)
                body = await _read_capped(response, self._max_response_bytes)
        except TimeoutError:
            raise GatewayError(Reason.REGISTRY_TIMEOUT) from None
        except httpx.TimeoutException as exc:
            # httpx-aiohttp maps a refused connection to ConnectTimeout: tell them apart by the cause.
            refused = isinstance(exc.__cause__, OSError) and not isinstance(exc.__cause__, TimeoutError)
            raise GatewayError(Reason.REGISTRY_UNAVAILABLE if refused else Reason.REGISTRY_TIMEOUT) from None
        except httpx.HTTPError:
            raise GatewayError(Reason.REGISTRY_UNAVAILABLE) from None
        trace.get_current_span().set_attribute("http.response.status_code", response.status_code)
        return self._answer(op, spec, response.status_code, body)

    def _answer(self, op: Operation, spec: RestOperationSpec, status: int, body: bytes) -> Message:
        if status in spec.not_found_status:
            raise GatewayError(Reason.SUBJECT_NOT_FOUND)
        if status >= 500:
            raise GatewayError(Reason.REGISTRY_UNAVAILABLE)
        if not 200 <= status < 300:
            raise GatewayError(Reason.REGISTRY_BAD_RESPONSE)
        try:
            document = loads_strict(body)   # one meaning: no duplicated keys, NaN or runaway nesting
            node = _dig(document, spec.root) if spec.root else document
            mapped = {name: _convert(node, m) for name, m in spec.response.items()}
            message = op.response_cls()
            # Members of a newer dialect inside a mapped object are dropped, as unknown fields are on gRPC.
            json_format.ParseDict({k: v for k, v in mapped.items() if v is not None}, message,
                                  ignore_unknown_fields=True)
        except (ValueError, KeyError, TypeError, InvalidOperation, json_format.ParseError):
            raise GatewayError(Reason.REGISTRY_BAD_RESPONSE) from None
        discard_unknown_fields(message)
        return message

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            await response.aclose()
            raise GatewayError(Reason.REGISTRY_BAD_RESPONSE)
        chunks.append(chunk)
    return b"".join(chunks)


def _dig(node: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


def _convert(node: Any, m: FieldMapping) -> Any:
    value = _dig(node, m.path)
    if value is None:
        return None
    if m.transform == "money":
        amount = Decimal(str(value))
        units = int(amount)
        nanos = int((amount - units) * 1_000_000_000)
        return {"currencyCode": str(_dig(node, m.currency)), "units": str(units), "nanos": nanos}
    if m.transform == "date":
        year, month, day = (int(x) for x in str(value).split("-"))
        return {"year": year, "month": month, "day": day}
    if m.transform == "enum":
        return m.values[str(value)]
    if m.transform == "int":
        return int(value)
    if m.transform == "string":
        return str(value)
    return value
