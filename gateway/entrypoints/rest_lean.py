"""The lean route for registry exchanges: compiled matching and parsing, outside FastAPI's per-request work.

The routes ``create_rest_app`` derives from each operation's ``google.api.http`` option
(``GET /v1/population/persons/{national_id}`` ...) are the hot path of the REST door. For
them FastAPI builds a ``Request``, solves the endpoint's dependencies and scans its route
table on every call; ``LeanRegistryRoutes`` does none of that. It is an ASGI layer placed
*inside* every outer layer of the door (``FrontDoorGuard``'s framing limits, the address
limits, the door's telemetry, in-flight counting: all see the request as before) and just
outside FastAPI's router:

* it matches ``scope["path"]`` against FastAPI's own compiled pattern of each registry route
  (Starlette's ``compile_path``: ``{name}`` is ``[^/]+`` of the percent-decoded path) and serves
  a match whose method the route declares;
* anything else (another method on the same path, so 405 with ``Allow``; every other route;
  an ASGI ``root_path``) goes on to FastAPI unchanged;
* headers are read as Starlette reads them (the first value of a name, Latin-1), the query as
  Starlette parses it (``parse_qsl`` of the Latin-1 query string, blank values kept), and
  ``serve_exchange`` (the same function FastAPI's endpoint calls) builds the ``CallContext``,
  calls ``ExchangePipeline.exchange`` and writes the answer: proto3 JSON with ``x-request-id``,
  or the RFC 9457 problem.

``scope["route"]`` and ``scope["path_params"]`` are set as FastAPI's router sets them, so the
door's telemetry labels the request with the route template, never the URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf.message import Message
from starlette.responses import Response

from gateway.core.contracts import Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.pipeline import ExchangePipeline
from gateway.core.proto_typing import discard_unknown_fields
from gateway.entrypoints._context import call_context, echo_id
from gateway.entrypoints._problem import problem_response
from gateway.entrypoints._proto_json import proto_json
from gateway.entrypoints._request_url import request_url
from gateway.entrypoints._rest_mapping import rest_message

__all__ = ["LeanRegistryRoutes", "RegistryRoute", "registry_route", "serve_exchange"]

#: A header by its lower-case name: its first value, or None.
Header = Callable[[str], "str | None"]


async def serve_exchange(
    pipeline: ExchangePipeline,
    op: Operation,
    *,
    method: str,
    url: str,
    header: Header,
    path: Mapping[str, str],
    query: Sequence[tuple[str, str]],
) -> Response:
    """One registry exchange over REST: the answer (200, proto3 JSON) or the refusal (problem+json).

    ``url`` is the request URL as a DPoP proof's ``htu`` names it (``request_url``: never the Host
    header); ``path`` the route's variables (percent-decoded), ``query`` the query pairs in order.
    """
    ctx = call_context("rest", header, None)
    ctx.http_method, ctx.http_url = method, url
    ctx.dpop_proof = header("dpop") or ""
    try:
        message = _request_message(op, path, query, ctx.field_mask)
        masks = [v for k, v in query if k == "fields"]   # at most one by now
        if masks:
            ctx.field_mask = tuple(f for f in masks[0].split(",") if f)
        answer = await pipeline.exchange(op, message, ctx)
    except GatewayError as err:
        return problem_response(err, echo_id(ctx))
    discard_unknown_fields(answer)   # what leaves is what the audit lists, whatever the adapter kept
    body = proto_json(answer)
    return Response(body, media_type="application/json", headers={"x-request-id": echo_id(ctx)})


def _request_message(
    op: Operation, path: Mapping[str, str], query: Sequence[tuple[str, str]], header_mask: tuple[str, ...]
) -> Message:
    """Path and query through the canonical mapping; ``fields`` (the query form of x-fields) once, alone."""
    masks = [v for k, v in query if k == "fields"]
    if len(masks) > 1 or (masks and header_mask):
        raise GatewayError(Reason.INVALID_ARGUMENT, "The field mask is given more than once", field="fields")
    return rest_message(op.request_cls, path=path, query=[(k, v) for k, v in query if k != "fields"])


@dataclass(frozen=True)
class RegistryRoute:
    """One registry exchange route: its operation, FastAPI's compiled matcher for it, its methods.

    ``route`` is FastAPI's route object for the same path: ``scope["route"]`` names it, as the
    router would, for the door's telemetry (the template, never the URL).
    """

    op: Operation
    pattern: re.Pattern[str]
    convertors: Mapping[str, Any]
    methods: frozenset[str]
    route: Any


def registry_route(op: Operation, route: Any) -> RegistryRoute:
    """The lean matcher of ``op`` from the FastAPI route serving it (same pattern, convertors, methods)."""
    if getattr(route, "path", None) != op.http_path:
        raise ValueError(f"{op.full_name}: the route {getattr(route, 'path', route)!r} does not serve it")
    return RegistryRoute(op, route.path_regex, dict(route.param_convertors), frozenset(route.methods), route)


def _first_values(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header values by name, the first of a repeated name winning (as Starlette's ``Headers.get``)."""
    out: dict[str, str] = {}
    for key, value in headers:
        name = key.decode("latin-1")
        if name not in out:
            out[name] = value.decode("latin-1")
    return out


class LeanRegistryRoutes:
    """ASGI layer serving the registry exchange routes itself; everything else goes on to ``app``.

    Place it inside the door's outer layers and outside the router (``create_rest_app`` adds it
    first, so it is the innermost user middleware). ``routes`` must be the first routes of the
    application, in its order: then the first full match here is the one FastAPI would pick.
    """

    def __init__(self, app: Any, *, pipeline: ExchangePipeline, routes: Sequence[RegistryRoute]) -> None:
        self.app, self.pipeline, self.routes = app, pipeline, tuple(routes)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            path, method = scope["path"], scope["method"]
            for route in self.routes:
                match = route.pattern.match(path)
                if match is not None and method in route.methods:
                    await self._exchange(route, match, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _exchange(
        self, route: RegistryRoute, match: re.Match[str], scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        params = {k: str(route.convertors[k].convert(v)) for k, v in match.groupdict().items()}
        scope["route"], scope["path_params"] = route.route, params   # as FastAPI's router sets them
        header = _first_values(scope["headers"]).get
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        try:
            response = await serve_exchange(
                self.pipeline, route.op, method=scope["method"], url=request_url(scope), header=header,
                path=params, query=query,
            )
        except GatewayError as err:   # as FastAPI's handler answers one raised outside the exchange
            response = problem_response(err)
        await response(scope, receive, send)

