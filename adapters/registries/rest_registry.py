"""Adapter for a registry that speaks its own REST/JSON dialect.

The dialect's request and answer shapes are declared in configuration
(``RestOperationSpec``): where each contract field is found in the answer and
how it is converted. The mapped value is built as proto3 JSON and parsed into
the contract's message, so an answer that does not fit the contract is a
``REGISTRY_BAD_RESPONSE``, never a half-filled message.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import aiohttp
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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``transport``: instead of aiohttp's (tests: ``httpx.MockTransport``)."""
        self._ops = dict(operations)
        self._transport = transport
        self._specs = dict(specs)
        self._base_url = base_url
        self._max_connections = max_connections
        self._max_response_bytes = max_response_bytes
        self._client: httpx.AsyncClient | None = None
        base = httpx.URL(base_url)
        port = base.port or (443 if base.scheme == "https" else 80)
        self._server: dict[str, str | int] = {"server.address": base.host, "server.port": port}   # parsed once
        self._placeholders = {m: _placeholders(spec) for m, spec in self._specs.items()}
        self._prebuilt: dict[str, bool] = {}   # per operation: the prebuilt URL proved equal to httpx's own

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # Stock httpx's pool collapses under concurrency; keep its API on aiohttp's transport.
            limits = httpx.Limits(
                max_connections=self._max_connections, max_keepalive_connections=self._max_connections
            )
            transport = self._transport or AiohttpTransport(limits=limits, client=_cookieless_session(limits))
            # Registry cookies are never kept: a jar shared by every consumer's calls would carry state
            # from one agency's exchange into another's (and parsing them cost ≈ 2.5 % of an exchange).
            self._client = httpx.AsyncClient(
                base_url=self._base_url, transport=transport, limits=limits, cookies=_NoCookies()
            )
            self._prebuilt = {m: _prebuilt_matches(self._client, spec) for m, spec in self._specs.items()}
        return self._client

    async def call(
        self, method: str, request: Message, *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> Message:
        spec = self._specs[method]
        # The path template, never the path itself: paths and queries hold national ids.
        attributes: dict[str, str | int] = {"http.request.method": spec.method, "url.template": spec.path,
                                            **self._server}
        with client_span(f"{spec.method} {spec.path}", attributes):
            return await self._call(method, request, timeout=timeout, metadata=outgoing_metadata(metadata))

    async def _call(
        self, method: str, request: Message, *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> Message:
        op, spec = self._ops[method], self._specs[method]
        values = json_format.MessageToDict(
            request, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        fields = {k: str(v) for k, v in values.items()}
        url = spec.path.format_map(fields)
        params = {k: str(v).format_map(fields) for k, v in spec.query.items()}
        headers = {k: v for k, v in metadata if k in ("traceparent", "tracestate", "x-request-id")}
        try:
            async with asyncio.timeout(timeout):
                client = self._http()
                target = self._target(client, method, fields, url, params)
                outgoing = client.build_request(spec.method, target, params=None if isinstance(target, httpx.URL)
                                                else params, headers=headers, timeout=timeout)
                # Streamed, so that max_response_bytes stops reading (it capped an answer read whole before).
                response = await client.send(outgoing, stream=True)
                try:
                    body = await _read_capped(response, self._max_response_bytes)
                finally:
                    await response.aclose()
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

    def _target(
        self, client: httpx.AsyncClient, method: str, fields: Mapping[str, str], path: str, params: Mapping[str, str]
    ) -> httpx.URL | str:
        """The request URL: prebuilt from the client's parsed base URL when every value placed in it is
        made of unreserved characters (RFC 3986 §2.3: nothing to encode, no dot segment), so that httpx
        does not parse the whole URL again (and validate its address) on each call; else the relative
        path, which the client merges and encodes as it always did."""
        if not self._prebuilt.get(method) or not all(_plain(fields.get(f, "")) for f in self._placeholders[method]):
            return path
        return _with_path(client.base_url, path, params)

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


_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")


def _plain(value: str) -> bool:
    return _UNRESERVED.fullmatch(value) is not None and value not in (".", "..")


def _placeholders(spec: RestOperationSpec) -> frozenset[str]:
    """The request fields a dialect's path and query templates name."""
    templates = [spec.path, *spec.query.values()]
    return frozenset(name for t in templates for _, name, _, _ in string.Formatter().parse(t) if name)


def _with_path(base: httpx.URL, path: str, params: Mapping[str, str]) -> httpx.URL:
    """``base`` (parsed once, with httpx's trailing slash) with ``path`` under it and ``params`` as its query,
    without parsing again: valid only for an already encoded path and plain values (see ``_target``)."""
    prefix = base.raw_path.decode("ascii")   # as httpx merges a relative URL: "/" for an empty path
    url = httpx.URL.__new__(httpx.URL)   # the parsed, encoded pieces of ``base``, not parsed nor validated again
    url._uri_reference = base._uri_reference._replace(path=prefix + path.lstrip("/"),
                                                      query=urlencode(list(params.items())) or None)
    return url


class _NoCookies(http.cookiejar.CookieJar):
    """httpx's cookie jar that keeps nothing: no registry cookie is ever sent back."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        return None


def _cookieless_session(limits: httpx.Limits) -> Any:
    """aiohttp's session as httpx-aiohttp builds it, with a jar that keeps nothing (``DummyCookieJar``)."""

    def make() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(keepalive_timeout=limits.keepalive_expiry or 0.0,
                                         ssl=httpx.create_ssl_context(),
                                         limit=limits.max_connections or 0)  # 0: no limit, as httpx-aiohttp's
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    return make


def _prebuilt_matches(client: httpx.AsyncClient, spec: RestOperationSpec) -> bool:
    """Whether the prebuilt URL of ``spec`` is, for plain values, the URL httpx builds itself.

    Checked once per operation when the client is made; False (httpx parses every call, as before)
    for a template whose literal text httpx would encode or normalise, a base URL with a query, or
    an httpx whose URL internals differ."""
    sample = dict.fromkeys(_placeholders(spec), "0")
    path = spec.path.format_map(sample)
    params = {k: v.format_map(sample) for k, v in spec.query.items()}
    try:
        expected = client.build_request(spec.method, path, params=params).url
        return client.base_url.query == b"" and str(_with_path(client.base_url, path, params)) == str(expected)
    except (AttributeError, TypeError, ValueError, KeyError, httpx.InvalidURL):
        return False


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
