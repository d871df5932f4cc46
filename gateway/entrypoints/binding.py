"""Serving the gateway's own proto services (catalogue, consents, admin, audit ...) on both doors.

A ``ServiceBinding`` (``gateway.application.service``: a proto service, its handler
coroutines and who may call each method) is served from the descriptors alone
over gRPC (generic handlers, rich error status) and over REST (routes from
``google.api.http``: path, query and ``body: "*"`` fields; proto3 JSON; OpenAPI
from the descriptors). Here: authentication per the method's ``Access``, and the
translation of requests, answers and refusals for each door.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from fastapi import FastAPI, Request, Response
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from gateway.application.service import Access, Call, ServiceBinding
from gateway.core.auth import Principal
from gateway.core.errors import GatewayError, Reason
from gateway.core.pipeline import CallContext, ExchangePipeline
from gateway.core.proto_typing import HTTP_OPTION, discard_unknown_fields
from gateway.entrypoints._citizen_cookie import CitizenCookie
from gateway.entrypoints._context import call_context, echo_id, refuse_bad_request_id
from gateway.entrypoints._grpc_security import Handler, admit_grpc_call
from gateway.entrypoints._grpc_status import abort_unexpected, abort_with
from gateway.entrypoints._problem import problem_response
from gateway.entrypoints._request_url import request_url
from gateway.entrypoints._rest_mapping import json_body, rest_message
from gateway.entrypoints.grpc_server import parse_request
from gateway.entrypoints.openapi_schema import message_ref

__all__ = ["install_grpc", "install_rest"]


async def _authorise(pipeline: ExchangePipeline, access: Access, ctx: CallContext) -> Principal | None:
    if access.kind == "public":
        return None
    principal = await pipeline.authenticate_async(ctx, kind=access.kind)
    if access.scope and access.scope not in principal.scopes:
        raise GatewayError(Reason.WRONG_TOKEN_SCOPE, f"This operation needs the '{access.scope}' scope")
    return principal


# --- gRPC ----------------------------------------------------------------------------------------


def _grpc_handler(pipeline: ExchangePipeline, b: ServiceBinding, m: MethodDescriptor) -> Handler:
    req_cls = message_factory.GetMessageClass(m.input_type)
    handler, access = b.handlers[m.name], b.access[m.name]

    async def handle(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        md = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        ctx = call_context("grpc", md.get, context.time_remaining())
        try:
            admit_grpc_call(pipeline, context, ctx)
            refuse_bad_request_id(ctx)
            principal = await _authorise(pipeline, access, ctx)
            request = parse_request(req_cls, raw)
            response = await handler(request, Call(principal, ctx))
            discard_unknown_fields(response)
            wire: bytes = response.SerializeToString()  # protobuf ships no type information
            return wire
        except GatewayError as err:
            await abort_with(context, err, echo_id(ctx))
        except Exception as exc:  # the catch-all: INTERNAL without the exception's text
            await abort_unexpected(context, exc, echo_id(ctx))
        raise AssertionError("unreachable")

    return grpc.unary_unary_rpc_method_handler(handle)


def install_grpc(pipeline: ExchangePipeline, bindings: list[ServiceBinding]) -> Callable[[grpc.aio.Server], list[str]]:
    """An ``extra`` for ``create_grpc_server``: registers the bindings, returns their service names."""

    def add(server: grpc.aio.Server) -> list[str]:
        for b in bindings:
            handlers = {m.name: _grpc_handler(pipeline, b, m) for m in b.methods()}
            server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(b.service, handlers)])
        return [b.service for b in bindings]

    return add


# --- REST ----------------------------------------------------------------------------------------


def _http_rule(m: MethodDescriptor) -> tuple[str, str, str]:
    opts = m.GetOptions()
    if not opts.HasExtension(HTTP_OPTION):
        return "", "", ""
    rule = opts.Extensions[HTTP_OPTION]
    kind = rule.WhichOneof("pattern")
    if kind in (None, "custom"):
        return "", "", ""
    return kind.upper(), getattr(rule, kind), rule.body


async def _rest_request(req_cls: type[Message], request: Request, body_rule: str) -> Message:
    """Through the canonical mapping (``_rest_mapping``); the body is read once, already size-bounded."""
    body = None
    if body_rule == "*":
        raw = await request.body()
        body = json_body(raw, request.headers.get("content-type"), request.headers.get("content-encoding")) or {}
    path = {k: str(v) for k, v in request.path_params.items()}
    return rest_message(req_cls, path=path, query=request.query_params.multi_items(), body=body)


async def _rest_principal(
    pipeline: ExchangePipeline, access: Access, ctx: CallContext, request: Request, cookie: CitizenCookie | None
) -> Principal | None:
    """A citizen method also accepts the page's session cookie (``_citizen_cookie``); a token wins."""
    if cookie is not None and access.kind == "citizen":
        principal = await cookie.principal(request.method, request.headers, request.cookies)
        if principal is not None:
            return principal
    return await _authorise(pipeline, access, ctx)


def _rest_endpoint(
    pipeline: ExchangePipeline, b: ServiceBinding, m: MethodDescriptor, body_rule: str, cookie: CitizenCookie | None
) -> Callable[[Request], Awaitable[Response]]:
    req_cls = message_factory.GetMessageClass(m.input_type)
    handler, access = b.handlers[m.name], b.access[m.name]

    async def endpoint(request: Request) -> Response:
        ctx = call_context("rest", request.headers.get, None)
        ctx.http_method, ctx.http_url = request.method, request_url(request.scope)   # never the Host header
        ctx.dpop_proof = request.headers.get("dpop", "")
        try:
            refuse_bad_request_id(ctx)
            principal = await _rest_principal(pipeline, access, ctx, request, cookie)
            message = await _rest_request(req_cls, request, body_rule)
            response = await handler(message, Call(principal, ctx))
        except GatewayError as err:
            return problem_response(err, echo_id(ctx))
        discard_unknown_fields(response)
        body = json_format.MessageToJson(
            response, indent=None, ensure_ascii=False, always_print_fields_with_no_presence=b.print_defaults
        )
        return Response(body, media_type="application/json", headers={"x-request-id": echo_id(ctx)})

    endpoint.__name__ = m.name
    return endpoint


def install_rest(
    pipeline: ExchangePipeline, bindings: list[ServiceBinding], cookie: CitizenCookie | None = None
) -> Callable[[FastAPI], dict[str, Any]]:
    """A REST installer: adds routes, returns the OpenAPI component schemas they use; with ``cookie``,
    citizen methods also accept the page's session cookie."""

    def add(app: FastAPI) -> dict[str, Any]:
        components: dict[str, Any] = {}
        for b in bindings:
            for m in b.methods():
                verb, path, body_rule = _http_rule(m)
                if not verb:
                    continue
                app.add_api_route(
                    path,
                    _rest_endpoint(pipeline, b, m, body_rule, cookie),
                    methods=[verb],
                    tags=[*(b.tags or [b.service])],  # FastAPI's list[str | Enum] is invariant
                    summary=f"{b.service}/{m.name}",
                    operation_id=f"{b.service}.{m.name}",
                    openapi_extra=_doc(m, path, verb, body_rule, b.access[m.name], components),
                )
        return components

    return add


def _doc(
    m: MethodDescriptor, path: str, verb: str, body_rule: str, access: Access, components: dict[str, Any]
) -> dict[str, Any]:
    import re

    params: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in re.findall(r"{(\w+)}", path)
    ]
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    doc: dict[str, Any] = {
        "parameters": params,
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": message_ref(m.output_type, components)}},
            },
            "400": {"description": "Invalid request", "content": problem},
            "401": {"description": "Not authenticated", "content": problem},
            "403": {"description": "Refused", "content": problem},
            "404": {"description": "Not found", "content": problem},
        },
    }
    if body_rule == "*":
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": message_ref(m.input_type, components)}},
        }
    if access.kind != "public":
        doc["security"] = [{"bearer": []}]
    return doc
