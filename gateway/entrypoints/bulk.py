"""Bulk look-ups on both doors: gRPC ``passerelle.gateway.v1.BulkExchange/Lookup`` (server streaming)
and REST ``POST /v1/bulk:lookup`` (``application/x-ndjson``, one line per item as it is written).

The use case is ``gateway.application.bulk``; here: the call's checks before the stream starts
(metadata caps, authentication once, the request, the method, the item count: refused as a whole,
in the error model of the door), each item read as the method's request (a malformed one is
refused alone), and each answer written in the same ``BulkLookupItem`` shape on both doors (gRPC: an
answer group's items in one ``BulkLookupAnswers`` stream message, or a few of at most ``PART_BYTES`` of
answers each; REST: one NDJSON line per item, a group's lines in one write, or a few likewise). A
client that leaves stops the batch: gRPC cancels the handler; on REST the ``http.disconnect``
event does (the server drops writes to a closed connection silently, so they cannot tell). A client
that stays connected but reads nothing for ``[gateway] bulk_idle_timeout_s`` is treated as gone.
A consumer's batch slot (``[gateway] bulk_consumer_batches``) is taken right after authentication,
before the request body is read (REST) or parsed (gRPC), and given back when the stream ends. The
REST body is parsed in a worker thread: a large body does not block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import grpc
from fastapi import FastAPI, Request, Response
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message
from google.rpc import status_pb2

from gateway._pb.passerelle.gateway.v1 import bulk_pb2
from gateway.application.bulk import BatchSlot, BulkLookups, ClientGone, ItemAnswer, Order
from gateway.core.contracts import Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.proto_typing import discard_unknown_fields
from gateway.entrypoints._context import call_context, echo_id
from gateway.entrypoints._grpc_security import admit_grpc_call
from gateway.entrypoints._grpc_status import abort_unexpected, abort_with, status_message
from gateway.entrypoints._problem import problem_response
from gateway.entrypoints._proto_json import json_line, message_to_dict
from gateway.entrypoints._request_url import request_url
from gateway.entrypoints._rest_mapping import json_body, rest_message
from gateway.entrypoints.grpc_server import parse_request
from observability.logs import unexpected_errors

__all__ = ["GRPC_METHOD", "REST_PATH", "SERVICE", "grpc_bulk", "item_json", "item_message", "rest_bulk"]

SERVICE = "passerelle.gateway.v1.BulkExchange"
GRPC_METHOD = f"/{SERVICE}/Lookup"
REST_PATH = "/v1/bulk:lookup"
_TYPE_PREFIX = "type.googleapis.com/"


def _order(value: int) -> Order:
    return Order.COMPLETION if value == bulk_pb2.BULK_ORDER_COMPLETION else Order.INDEX


def _wrong_type(op: Operation) -> GatewayError:
    return GatewayError(Reason.INVALID_ARGUMENT, f"An item is not a {op.request_cls.DESCRIPTOR.full_name}",
                        field="items")


def item_message(result: ItemAnswer, request_id: str) -> bulk_pb2.BulkLookupItem:
    """One item's answer, the same on both doors: its index, its status (code 0, or the refusal with
    its ErrorInfo as a single call gives it on gRPC) and the minimised answer."""
    item = bulk_pb2.BulkLookupItem(index=result.index)
    if result.error is not None:
        item.status.CopyFrom(status_message(result.error, request_id))
        return item
    assert result.answer is not None
    discard_unknown_fields(result.answer)   # what leaves is what the audit lists, whatever the adapter kept
    item.status.CopyFrom(status_pb2.Status(code=0))
    item.answer.Pack(result.answer)
    return item


def item_json(item: bulk_pb2.BulkLookupItem) -> dict[str, Any]:
    """proto3 JSON of an item; ``index`` and ``status`` are always there (also 0 and OK)."""
    out: dict[str, Any] = {"index": item.index,
                           "status": json_format.MessageToDict(item.status, always_print_fields_with_no_presence=True)}
    if item.HasField("answer"):
        out["answer"] = json_format.MessageToDict(item.answer)
    return out


_OK_STATUS_JSON = json_format.MessageToDict(status_pb2.Status(code=0), always_print_fields_with_no_presence=True)


def answer_json(result: ItemAnswer, request_id: str) -> dict[str, Any]:
    """``item_json(item_message(result, request_id))``, without packing the answer into an ``Any`` and
    unpacking it again: the REST door's line for one item."""
    if result.error is not None or result.answer is None:
        return item_json(item_message(result, request_id))
    discard_unknown_fields(result.answer)   # what leaves is what the audit lists, whatever the adapter kept
    answer = {"@type": _TYPE_PREFIX + result.answer.DESCRIPTOR.full_name, **message_to_dict(result.answer)}
    return {"index": result.index, "status": dict(_OK_STATUS_JSON), "answer": answer}


#: The most bytes of answers one stream message (gRPC) or one write (REST) carries: a group of large
#: answers leaves in a few, each well under the 4 MiB a default gRPC client accepts
#: (``grpc.max_receive_message_length``); an answer larger than this leaves alone.
PART_BYTES = 1024 * 1024
P = TypeVar("P")


def _parts(pieces: Sequence[P], sizes: Sequence[int], budget: int = PART_BYTES) -> list[list[P]]:
    """``pieces`` in order, cut into runs of at most ``budget`` bytes (a piece larger than it alone)."""
    parts: list[list[P]] = []
    current: list[P] = []
    used = 0
    for piece, size in zip(pieces, sizes, strict=True):
        if current and used + size > budget:
            parts.append(current)
            current, used = [], 0
        current.append(piece)
        used += size
    if current:
        parts.append(current)
    return parts


# --- gRPC ----------------------------------------------------------------------------------------


def grpc_bulk(lookups: BulkLookups) -> Callable[[grpc.aio.Server], list[str]]:
    """An ``extra`` for ``create_grpc_server``: the streaming handler of ``BulkExchange/Lookup``."""
    pipeline = lookups.pipeline

    async def lookup(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        held: list[BatchSlot] = []
        try:
            await _lookup(raw, context, held)
        finally:   # however the call ends (also cancelled): the consumer's batch slot is given back
            for slot in held:
                slot.release()

    async def _lookup(raw: bytes, context: grpc.aio.ServicerContext[Any, Any], held: list[BatchSlot]) -> None:
        md = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        ctx = call_context("grpc", md.get, context.time_remaining())
        context.set_trailing_metadata((("x-request-id", echo_id(ctx)),))
        try:
            admit_grpc_call(pipeline, context, ctx)
            principal = await lookups.authenticate(ctx)
            held.append(lookups.batch_slot(principal, ctx))
            request = parse_request(bulk_pb2.BulkLookupRequest, raw)
            assert isinstance(request, bulk_pb2.BulkLookupRequest)
            op = lookups.operation(request.method, len(request.items))
            lookups.check_call(principal, ctx, op)
        except GatewayError as err:
            await abort_with(context, err, echo_id(ctx))
            return
        type_url = _TYPE_PREFIX + op.request_cls.DESCRIPTOR.full_name

        def read(item: any_pb2.Any) -> Message:
            if item.type_url != type_url:
                raise _wrong_type(op)
            return parse_request(op.request_cls, item.value)

        async def write(results: Sequence[ItemAnswer], written: Callable[[], None]) -> None:
            rid = echo_id(ctx)
            items = [item_message(r, rid) for r in results]
            for part in _parts(items, [item.ByteSize() for item in items]):   # a group: one message or a few
                try:
                    await context.write(bulk_pb2.BulkLookupAnswers(items=part))   # waits for HTTP/2 flow control
                except (grpc.aio.AioRpcError, grpc.aio.AbortError, asyncio.InvalidStateError, RuntimeError):
                    raise ClientGone from None
                for _ in part:
                    written()

        try:
            report = await lookups.run(principal, op, request.items, read, ctx, order=_order(request.order),
                                       write=write)
            if report.idle:   # not OK: the client read nothing for too long (it will likely never see this)
                context.set_code(grpc.StatusCode.CANCELLED)
                context.set_details("The client read no answer for bulk_idle_timeout_s: the batch stopped")
        except GatewayError as err:   # the batch stopped (token revoked or expired): the call's status says why
            await abort_with(context, err, echo_id(ctx))
        except Exception as exc:  # the catch-all: INTERNAL without the exception's text
            await abort_unexpected(context, exc, echo_id(ctx))

    handler: grpc.RpcMethodHandler[bytes, bulk_pb2.BulkLookupAnswers] = grpc.unary_stream_rpc_method_handler(
        lookup, response_serializer=bulk_pb2.BulkLookupAnswers.SerializeToString
    )

    def add(server: grpc.aio.Server) -> list[str]:
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"Lookup": handler})])
        return [SERVICE]

    return add


# --- REST ----------------------------------------------------------------------------------------


class _NdjsonStream(Response):
    """Writes one line per item while ``run`` goes; an ``http.disconnect`` cancels it (the batch stops)."""

    media_type = "application/x-ndjson"

    def __init__(self, run: Callable[[Callable[[bytes], Awaitable[None]]], Coroutine[Any, Any, object]],
                 request_id: str, slot: BatchSlot, idle_timeout_s: float) -> None:
        super().__init__()
        self._slot, self._idle_timeout_s = slot, idle_timeout_s
        # No content-length: the body is as long as the batch makes it.
        self.raw_headers = [(b"content-type", self.media_type.encode()), (b"cache-control", b"no-store"),
                            (b"x-request-id", request_id.encode())]
        self._run = run

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self._stream(receive, send)
        finally:   # however the stream ends: the consumer's batch slot is given back
            self._slot.release()

    async def _stream(self, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def write(line: bytes) -> None:
            try:
                await send({"type": "http.response.body", "body": line, "more_body": True})   # waits for the client
            except OSError:   # a server that reports the closed connection on write (uvicorn drops it)
                raise ClientGone from None

        running: asyncio.Task[object] = asyncio.create_task(self._run(write))
        left = asyncio.create_task(_disconnected(receive))
        await asyncio.wait((running, left), return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        if left.done():
            return
        left.cancel()
        with contextlib.suppress(TimeoutError):   # a client that reads nothing: the server drops the connection
            await asyncio.wait_for(send({"type": "http.response.body", "body": b"", "more_body": False}),
                                   self._idle_timeout_s)


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


#: The longest the cyclic collector stays paused by overlapping bulk parses before one collection.
_LONGEST_PAUSE_S = 5.0


class _CyclicGcPaused:
    """The cyclic garbage collector paused while at least one bulk body is being parsed.

    A body of millions of tiny items allocates millions of containers; every few hundred of them the
    collector runs in the parsing thread and holds the interpreter lock while it walks them all, so
    the event loop stalled for up to 0.4–0.75 s per such body and the parse cost 4.4 s of CPU (1.2 s
    with the collector paused: measured on a 4M-item body). A parsed JSON document holds no reference
    cycles; its objects are freed by reference counting whatever the collector does.

    Parses that overlap (bulk calls started half a parse apart) would keep the pause open for as long
    as they go on, and the rest of the process's reference cycles with it: a parse that starts when the
    pause has lasted ``_LONGEST_PAUSE_S`` collects once first (in its worker thread)."""

    _lock = threading.Lock()
    _parsing = 0
    _was_enabled = False
    _since = 0.0
    _clock = staticmethod(time.monotonic)

    def __enter__(self) -> None:
        cls = type(self)
        collect = False
        with cls._lock:
            now = cls._clock()
            if cls._parsing == 0:
                cls._was_enabled = gc.isenabled()
                gc.disable()
                cls._since = now
            elif cls._was_enabled and now - cls._since >= _LONGEST_PAUSE_S:
                collect, cls._since = True, now
            cls._parsing += 1
        if collect:
            try:
                gc.collect()
            except BaseException:   # never leave the count raised: the collector would stay paused
                self.__exit__()
                raise

    def __exit__(self, *exc: object) -> None:
        cls = type(self)
        with cls._lock:
            cls._parsing -= 1
            if cls._parsing == 0 and cls._was_enabled:
                gc.enable()


def _parsed_without_cyclic_gc(raw: bytes, content_type: str | None, encoding: str | None) -> dict[str, Any] | None:
    with _CyclicGcPaused():
        return json_body(raw, content_type, encoding)


def _split(body: dict[str, Any]) -> tuple[bulk_pb2.BulkLookupRequest, list[Any]]:
    """The call's own fields (strict proto3 JSON) and its items, read one by one later."""
    items = body.pop("items", [])
    if not isinstance(items, list):
        raise GatewayError(Reason.INVALID_ARGUMENT, "items must be a JSON array", field="items")
    head = rest_message(bulk_pb2.BulkLookupRequest, path={}, query=[], body=body)
    assert isinstance(head, bulk_pb2.BulkLookupRequest)
    return head, items


def _rest_reader(op: Operation) -> Callable[[Any], Message]:
    type_url = _TYPE_PREFIX + op.request_cls.DESCRIPTOR.full_name

    def read(item: Any) -> Message:
        """An item in proto3 JSON of the method's request; "@type" may be left out."""
        if not isinstance(item, dict) or item.get("@type", type_url) != type_url:
            raise _wrong_type(op)
        fields = {k: v for k, v in item.items() if k != "@type"}
        return rest_message(op.request_cls, path={}, query=[], body=fields)

    return read


def rest_bulk(lookups: BulkLookups) -> Callable[[FastAPI], dict[str, Any]]:
    """A REST installer: ``POST /v1/bulk:lookup`` and its OpenAPI description."""

    async def endpoint(request: Request) -> Response:
        ctx = call_context("rest", request.headers.get, None)
        ctx.http_method, ctx.http_url = request.method, request_url(request.scope)   # never the Host header
        ctx.dpop_proof = request.headers.get("dpop", "")
        rid = echo_id(ctx)
        try:
            principal = await lookups.authenticate(ctx)   # before the (large) body is read
            slot = lookups.batch_slot(principal, ctx)     # so is the consumer's batch slot
        except GatewayError as err:
            return problem_response(err, rid)
        try:
            raw = await request.body()
            # Parsed in a worker thread: a body of millions of tiny items must not block the event loop.
            body = await asyncio.to_thread(_parsed_without_cyclic_gc, raw, request.headers.get("content-type"),
                                           request.headers.get("content-encoding"))
            del raw
            head, items = _split(body or {})
            op = lookups.operation(head.method, len(items))
            lookups.check_call(principal, ctx, op)
        except GatewayError as err:
            slot.release()
            return problem_response(err, rid)
        except BaseException:
            slot.release()
            raise
        read = _rest_reader(op)

        async def run(send_line: Callable[[bytes], Awaitable[None]]) -> object:
            async def write(results: Sequence[ItemAnswer], written: Callable[[], None]) -> None:
                lines = [json_line(answer_json(r, rid)) for r in results]
                for part in _parts(lines, [len(line) for line in lines]):   # a group: one write or a few
                    await send_line(b"".join(part))
                    for _ in part:
                        written()

            try:
                return await lookups.run(principal, op, items, read, ctx, order=_order(head.order), write=write)
            except GatewayError as err:   # the batch stopped (token revoked or expired): one last line says why
                error = err
            except Exception as exc:   # a bug (an answer that cannot be written, ...): INTERNAL, as on gRPC
                unexpected_errors().record(exc, "rest")
                error = GatewayError(Reason.INTERNAL)
            end = {"status": json_format.MessageToDict(status_message(error, rid),
                                                       always_print_fields_with_no_presence=True)}
            with contextlib.suppress(ClientGone, TimeoutError):   # nor wait for a client that reads nothing
                await asyncio.wait_for(send_line(json_line(end)), lookups.idle_timeout_s)
            return None

        try:
            return _NdjsonStream(run, rid, slot, lookups.idle_timeout_s)
        except BaseException:
            slot.release()
            raise

    def add(app: FastAPI) -> dict[str, Any]:
        app.add_api_route(REST_PATH, endpoint, methods=["POST"], tags=["bulk"], summary=f"{SERVICE}/Lookup",
                          operation_id=f"{SERVICE}.Lookup", openapi_extra=_doc())
        return {"BulkLookupRequest": _REQUEST_SCHEMA, "BulkLookupItem": _ITEM_SCHEMA}

    return add


_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object", "title": "BulkLookupRequest", "required": ["method", "items"], "additionalProperties": False,
    "properties": {
        "method": {"type": "string", "example": "registry.population.v1.PopulationRegistry/GetPerson"},
        "order": {"type": "string", "enum": ["BULK_ORDER_INDEX", "BULK_ORDER_COMPLETION"],
                  "description": "Answers in the order of the items (default) or as they complete"},
        "items": {"type": "array", "maxItems": 100_000,
                  "description": "Requests of the method in proto3 JSON (\"@type\" optional); at most "
                                 "[gateway] bulk_max_items",
                  "items": {"type": "object", "additionalProperties": True,
                            "example": {"nationalId": "1991062434054"}}},
    },
}
_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object", "title": "BulkLookupItem", "required": ["index", "status"],
    "properties": {
        "index": {"type": "integer", "minimum": 0},
        "status": {"type": "object", "description": "google.rpc.Status: code 0, or the refusal with its ErrorInfo "
                                                    "reason in details (as a single call on gRPC)",
                   "properties": {"code": {"type": "integer"}, "message": {"type": "string"},
                                  "details": {"type": "array", "items": {"type": "object"}}}},
        "answer": {"type": "object", "description": "The minimised answer, proto3 JSON with \"@type\""},
    },
}


def _doc() -> dict[str, Any]:
    from gateway.entrypoints.rest import route_headers

    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        "description": "Many look-ups of one registry method in one call; each item is a full exchange "
                       "(mandate, consent per subject, minimisation, one audit record marked bulk).",
        "parameters": route_headers(),
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/BulkLookupRequest"}}}},
        "responses": {
            "200": {"description": "One line per item, as items are answered",
                    "content": {"application/x-ndjson": {"schema": {"$ref": "#/components/schemas/BulkLookupItem"}}}},
            "400": {"description": "Invalid request", "content": problem},
            "401": {"description": "Not authenticated", "content": problem},
            "404": {"description": "Unknown method", "content": problem},
            "413": {"description": "Too many items or too large a body", "content": problem},
            "429": {"description": "Too many bulk look-ups of this consumer at a time (Retry-After)",
                    "content": problem},
        },
        "security": [{"bearer": []}],
    }
