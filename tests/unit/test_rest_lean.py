"""The lean registry route serves registry exchanges itself and hands everything else to FastAPI."""

from __future__ import annotations

from typing import Any, cast

import httpx
import pytest
from google.protobuf.message import Message

from gateway._pb.registry.population.v1 import population_pb2
from gateway.core.contracts import Operation, load_operations
from gateway.core.pipeline import CallContext, ExchangePipeline
from gateway.entrypoints.rest import create_rest_app
from gateway.entrypoints.rest_lean import LeanRegistryRoutes

NID = "1991062434054"


class FakePipeline:
    """Answers every exchange with one person and keeps what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[Message, CallContext]] = []

    async def exchange(self, op: Operation, request: Message, ctx: CallContext) -> Message:
        self.calls.append((request, ctx))
        return population_pb2.Person(given_names="Anne", family_name="Muller")

    def record_security_event(self, reason: Any, protocol: str) -> None:
        pass


async def _ready() -> dict[str, Any]:
    return {"ready": True}


def app_and_seen(lean: bool) -> tuple[Any, FakePipeline, list[str]]:
    """The REST app over a fake pipeline; ``seen`` lists the paths that reached FastAPI's router."""
    pipeline = FakePipeline()
    ops = load_operations(["registry.population.v1.PopulationRegistry"])
    app = create_rest_app(cast(ExchangePipeline, pipeline), ops, ready=_ready, lean_routes=lean)
    seen: list[str] = []
    router = app.router

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await router(scope, receive, send)

    app.router = spy  # type: ignore[assignment]   # the innermost app: what the lean layer hands on reaches it
    return app, pipeline, seen


async def get(app: Any, path: str, method: str = "GET", **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
        return await client.request(method, path, headers=headers)


async def test_a_registry_exchange_never_reaches_fastapis_router() -> None:
    app, pipeline, seen = app_and_seen(lean=True)
    r = await get(app, f"/v1/population/persons/{NID}?fields=familyName", **{"x-purpose": "student-aid",
                                                                           "dpop": "proof"})
    assert (r.status_code, r.json()) == (200, {"givenNames": "Anne", "familyName": "Muller"})
    assert seen == []
    request, ctx = pipeline.calls[0]
    assert request == population_pb2.GetPersonRequest(national_id=NID)
    assert (ctx.protocol, ctx.purpose, ctx.field_mask, ctx.dpop_proof, ctx.http_method) == (
        "rest", "student-aid", ("familyName",), "proof", "GET")
    assert ctx.http_url == f"http://127.0.0.1:8080/v1/population/persons/{NID}"   # the socket's, query dropped
    assert r.headers["x-request-id"] == dict(ctx.metadata)["x-request-id"]


async def test_without_the_lean_route_fastapi_serves_the_exchange() -> None:
    app, pipeline, seen = app_and_seen(lean=False)
    r = await get(app, f"/v1/population/persons/{NID}", **{"x-purpose": "student-aid"})
    assert r.status_code == 200
    assert seen == [f"/v1/population/persons/{NID}"]
    assert len(pipeline.calls) == 1


@pytest.mark.parametrize(("method", "path", "status"), [
    ("HEAD", f"/v1/population/persons/{NID}", 405),      # the route does not declare HEAD: FastAPI answers
    ("POST", f"/v1/population/persons/{NID}", 405),
    ("GET", f"/v1/population/persons/{NID}/", 404),
    ("GET", "/healthz", 200),
])
async def test_other_methods_and_routes_go_on_to_fastapi(method: str, path: str, status: int) -> None:
    app, pipeline, seen = app_and_seen(lean=True)
    r = await get(app, path, method)
    assert (r.status_code, seen, pipeline.calls) == (status, [path], [])
    if status == 405:
        assert r.headers["allow"] == "GET"


async def test_the_door_telemetry_sees_the_route_template_not_the_url() -> None:
    """``scope["route"]`` names FastAPI's route, as its router would: the span and metric label is the template."""
    app, _, _ = app_and_seen(lean=True)
    routes: list[str] = []

    async def outer(scope: Any, receive: Any, send: Any) -> None:   # where AsgiTelemetry reads it, after the call
        await app(scope, receive, send)
        routes.append(scope["route"].path)

    r = await get(outer, f"/v1/population/persons/{NID}", **{"x-purpose": "student-aid"})
    assert (r.status_code, routes) == (200, ["/v1/population/persons/{national_id}"])


def test_the_lean_layer_is_the_innermost_middleware() -> None:
    app, _, _ = app_and_seen(lean=True)
    assert app.user_middleware[-1].cls is LeanRegistryRoutes
