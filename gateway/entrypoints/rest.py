"""The REST front door (FastAPI): routes, bodies and OpenAPI derived from the contracts.

Each operation with a ``google.api.http`` annotation becomes a route; path and
query parameters fill the request message through proto3 JSON; answers are
proto3 JSON; refusals are RFC 9457 ``application/problem+json`` with the same
reason codes as gRPC.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from gateway.core.contracts import Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.pipeline import ExchangePipeline
from gateway.core.proto_typing import descriptor_of
from gateway.entrypoints._asgi_guard import FrontDoorGuard
from gateway.entrypoints._problem import PROBLEM_SCHEMA, problem_response
from gateway.entrypoints._request_url import request_url
from gateway.entrypoints.api_docs import install_api_docs
from gateway.entrypoints.openapi_schema import message_ref, path_parameters
from gateway.entrypoints.rest_lean import LeanRegistryRoutes, registry_route, serve_exchange
from observability.frontdoor import FASTAPI_TELEMETRY_OFF

__all__ = ["PROBLEM_SCHEMA", "SizeLimits", "create_rest_app", "problem_response", "route_headers"]

_HEADERS = [
    ("x-purpose", True, "Purpose code from the purposes catalogue"),
    ("x-consent-id", False, "Consent reference, where the legal basis is consent"),
    ("x-case-id", False, "Case or procedure the lookup serves"),
    ("x-officer-id", False, "Pseudonymous id of the acting official"),
    ("x-request-id", False, "Correlation id, echoed back"),
    ("x-ai-system", False, "Registration id of an automated-decision or AI system fed by this lookup"),
    ("x-fields", False, "Comma-separated field mask narrowing the answer"),
]


#: The former name of the outermost ASGI layer (framing limits and more: ``FrontDoorGuard``).
SizeLimits = FrontDoorGuard


def _endpoint(pipeline: ExchangePipeline, op: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await serve_exchange(
            pipeline, op, method=request.method, url=request_url(request.scope),   # never the Host header
            header=request.headers.get, path={k: str(v) for k, v in request.path_params.items()},
            query=request.query_params.multi_items(),
        )

    endpoint.__name__ = op.method
    return endpoint


def route_headers() -> list[dict[str, Any]]:
    """The exchange headers as OpenAPI parameters (single calls and bulk look-ups)."""
    return [
        {"name": name, "in": "header", "required": required, "schema": {"type": "string"}, "description": doc}
        for name, required, doc in _HEADERS
    ]


def _route_doc(op: Operation) -> dict[str, Any]:
    params = path_parameters(op)
    params.append({"name": "fields", "in": "query", "required": False, "schema": {"type": "string"},
                   "description": "Field mask narrowing the answer (instead of x-fields, not with it)"})
    params += route_headers()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    responses: dict[str, Any] = {
        "200": {"description": "The minimised answer", "content": {"application/json": {"schema": {}}}},
    }
    for status, text in [
        (400, "Invalid request"),
        (401, "Not authenticated"),
        (403, "Refused"),
        (404, "Not found"),
        (429, "Quota exceeded"),
        (502, "Bad registry answer"),
        (503, "Registry or audit unavailable"),
        (504, "Registry timeout"),
    ]:
        responses[str(status)] = {"description": text, "content": problem}
    return {"parameters": params, "responses": responses, "security": [{"bearer": []}]}


def create_rest_app(
    pipeline: ExchangePipeline,
    operations: Mapping[str, Operation],
    *,
    ready: Callable[[], Awaitable[dict[str, Any]]],
    title: str = "Passerelle",
    version: str = "0.1.0",
    max_header_bytes: int = 16 * 1024,
    max_body_bytes: int = 64 * 1024,
    installers: list[Callable[[FastAPI], dict[str, Any]]] | None = None,
    body_limits: Mapping[str, int] | None = None,
    lean_routes: bool = True,
) -> FastAPI:
    """``installers`` add further routes (the gateway's own services) and return their schemas;
    ``body_limits``: routes (exact paths) with a body limit of their own (the bulk look-up's).

    ``lean_routes``: the registry exchanges are served by ``rest_lean.LeanRegistryRoutes`` (the
    routes stay in FastAPI's table, so the OpenAPI document and 405 answers are unchanged); False
    only in the tests that compare both ways."""
    app = FastAPI(
        redirect_slashes=False,  # no redirects of any kind: /x/ and /x%2F are a plain 404
        title=title,
        version=version,
        docs_url=None,   # /docs is ours: Swagger UI from an installed package, no CDN (api_docs)
        redoc_url=None,
        openapi_url=None,
        telemetry=FASTAPI_TELEMETRY_OFF,
    )  # our own spans (observability.frontdoor)
    components: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    lean = []
    for op in operations.values():
        if not op.http_method:
            continue
        doc = _route_doc(op)
        doc["responses"]["200"]["content"]["application/json"]["schema"] = message_ref(
            descriptor_of(op.response_cls), components
        )
        app.add_api_route(
            op.http_path,
            _endpoint(pipeline, op),
            methods=[op.http_method],
            tags=[op.service],
            summary=f"{op.service}/{op.method}",
            openapi_extra=doc,
            include_in_schema=True,
            operation_id=op.full_name.replace("/", "."),
        )
        lean.append(registry_route(op, app.routes[-1]))
    if lean_routes:   # added first, so innermost: every layer added after it wraps it
        app.add_middleware(LeanRegistryRoutes, pipeline=pipeline, routes=lean)
    for install in installers or []:
        components.update(install(app))
    _install_health(app, ready)
    _install_error_handlers(app)
    _install_openapi(app, components)
    install_api_docs(app, title)
    app.add_middleware(
        FrontDoorGuard,
        max_header_bytes=max_header_bytes,
        max_body_bytes=max_body_bytes,
        on_refusal=lambda reason: pipeline.record_security_event(reason, "rest"),
        body_limits=body_limits,
    )
    return app


def _install_health(app: FastAPI, ready: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        report = await ready()
        return JSONResponse(report, status_code=200 if report.get("ready") else 503)


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        reason = {404: Reason.UNKNOWN_SERVICE, 405: Reason.METHOD_NOT_ALLOWED, 413: Reason.REQUEST_TOO_LARGE}.get(
            status, Reason.INVALID_ARGUMENT if 400 <= status < 500 else Reason.INTERNAL
        )
        allow = (getattr(exc, "headers", None) or {}).get("Allow")
        return problem_response(GatewayError(reason), headers={"allow": allow} if allow else None)

    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return problem_response(exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        return problem_response(GatewayError(Reason.INVALID_ARGUMENT, "The request does not fit the schema"))

    async def unexpected(request: Request, exc: Exception) -> Response:
        return problem_response(GatewayError(Reason.INTERNAL))

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)


def _install_openapi(app: FastAPI, components: dict[str, Any]) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
            spec.setdefault("components", {}).setdefault("schemas", {}).update(components)
            spec["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json() -> JSONResponse:
        return JSONResponse(openapi())
