"""The citizen's REST-only routes: the GDPR Art. 15 copy as a download, the page at ``/me/``, demo sign-in.

- ``GET /v1/me/accesses/export?format=json|csv``: the whole visible history
  (``gateway.application.transparency.export_my_accesses``);
- ``/me/``: the static web page (``web/``: no build step, no CDN);
- demo only (``gateway serve --demo``): ``GET /v1/demo`` and ``POST /v1/demo/citizen-token``.

The rest of the citizen's API (``CitizenAccesses``, consents) is served on both doors by ``binding``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

from gateway.application.runtime import Gateway, RestInstaller
from gateway.application.transparency import export_my_accesses
from gateway.core.errors import GatewayError, Reason
from gateway.core.identifiers import national_id_problem
from gateway.demo.setup import demo_token
from gateway.entrypoints._citizen_cookie import citizen_cookie
from gateway.entrypoints._context import call_context, echo_id, refuse_bad_request_id
from gateway.entrypoints._problem import problem_response
from gateway.entrypoints._request_url import request_url
from gateway.entrypoints._rest_mapping import json_body

__all__ = ["WEB_DIR", "citizen_routes", "demo_installer", "export_installer", "page_installer"]

WEB_DIR = Path(__file__).resolve().parent / "web"
#: A page's CSP: everything from the gateway itself, nothing inline, no framing.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")  # fmt: skip

_EXPORT_QUERY = ("format", "since", "until")


def _export_query(items: list[tuple[str, str]]) -> dict[str, str]:
    """The canonical mapping's rule for a hand-written route: declared parameters only, each at most once."""
    query: dict[str, str] = {}
    for key, value in items:
        if key not in _EXPORT_QUERY:
            raise GatewayError(Reason.INVALID_ARGUMENT, "A query parameter is not declared for this route",
                               field="query")
        if key in query:
            raise GatewayError(Reason.INVALID_ARGUMENT, f"{key} is given more than once", field=key)
        query[key] = value
    return query


def export_installer(gateway: Gateway) -> RestInstaller:
    """``GET /v1/me/accesses/export``: the citizen's copy as a download (``export_my_accesses``); a bearer
    token or, with ``[citizen_login]``, the page's session cookie."""
    cookie = citizen_cookie(gateway)

    async def export(request: Request) -> Response:
        ctx = call_context("rest", request.headers.get, None)
        ctx.http_method, ctx.http_url = request.method, request_url(request.scope)   # never the Host header
        ctx.dpop_proof = request.headers.get("dpop", "")
        try:
            refuse_bad_request_id(ctx)
            by_cookie = await cookie.principal(request.method, request.headers, request.cookies) if cookie else None
            principal = by_cookie or await gateway.pipeline.authenticate_async(ctx, kind="citizen")
            query = _export_query(request.query_params.multi_items())
            body, media, name = await export_my_accesses(gateway, principal, fmt=query.get("format", "json"),
                                                         since=query.get("since", ""), until=query.get("until", ""))
        except GatewayError as err:
            return problem_response(err, echo_id(ctx))
        headers = {"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store",
                   "x-request-id": echo_id(ctx)}  # fmt: skip
        return Response(body, media_type=media, headers=headers)

    def install(app: FastAPI) -> dict[str, Any]:
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        doc = {
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "format", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"}},
                {"name": "since", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "until", "in": "query", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "The copy", "content": {"application/json": {"schema": {"type": "object"}},
                                                               "text/csv": {"schema": {"type": "string"}}}},
                **{str(code): {"description": text, "content": problem}
                   for code, text in [(400, "Invalid request"), (401, "Not authenticated"), (403, "Refused"),
                                      (429, "Quota exceeded")]},
            },
        }  # fmt: skip
        app.add_api_route("/v1/me/accesses/export", export, methods=["GET"], tags=["citizen"],
                          summary="GDPR Art. 15 copy of my accesses (json or csv)", openapi_extra=doc)  # fmt: skip
        return {}

    return install


def demo_installer(gateway: Gateway) -> RestInstaller:
    """Demo-only sign-in: mints a short-lived citizen token from the demo eID issuer's key."""
    data_dir = gateway.config.base_dir

    async def citizen_token(request: Request) -> Response:
        try:   # the same body rules as every JSON route (_rest_mapping.json_body): one reading or a refusal
            if request.query_params:
                raise GatewayError(Reason.INVALID_ARGUMENT, "A query parameter is not declared for this route",
                                   field="query")
            body = json_body(await request.body(), request.headers.get("content-type"),
                             request.headers.get("content-encoding")) or {}
        except GatewayError as err:
            return problem_response(err)
        value = body.get("nationalId", "")
        nid = value if isinstance(value, str) else ""
        problem = national_id_problem(nid)
        if problem:
            return problem_response(GatewayError(Reason.INVALID_ARGUMENT, "nationalId: " + problem, field="nationalId"))
        token = demo_token(data_dir, issuer_id="demo-citizens", subject=nid, scope="citizen", ttl_s=900)
        return JSONResponse({"token": token, "expiresIn": 900}, headers={"cache-control": "no-store"})

    async def info(request: Request) -> Response:
        return JSONResponse({"demo": True, "tokenTtlSeconds": 900})

    def install(app: FastAPI) -> dict[str, Any]:
        app.add_api_route("/v1/demo/citizen-token", citizen_token, methods=["POST"], tags=["demo"],
                          summary="DEMO ONLY: a 15-minute citizen token for a demo national id")  # fmt: skip
        app.add_api_route("/v1/demo", info, methods=["GET"], tags=["demo"], summary="DEMO ONLY: demo mode is on")
        return {}

    return install


class _Page(StaticFiles):
    """The static page with strict security headers."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers["content-security-policy"] = _CSP
        response.headers["x-content-type-options"] = "nosniff"
        response.headers["referrer-policy"] = "no-referrer"
        response.headers["cache-control"] = "no-cache"
        return response


def page_installer(app: FastAPI) -> dict[str, Any]:
    async def to_page(request: Request) -> Response:
        return RedirectResponse("/me/", status_code=308)

    app.add_api_route("/me", to_page, methods=["GET"], include_in_schema=False)
    app.mount("/me", _Page(directory=WEB_DIR, html=True), name="citizen-page")
    return {}


def citizen_routes(gateway: Gateway) -> list[RestInstaller]:
    """The export, (demo mode only) the demo sign-in, and the page, in the order they are added."""
    routes = [export_installer(gateway)]
    if gateway.config.gateway.demo:
        routes.append(demo_installer(gateway))
    return [*routes, page_installer]
