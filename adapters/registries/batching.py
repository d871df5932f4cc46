"""Grouping the calls of bulk look-ups into a registry's batch method (``batch_of`` in the contract).

The items of a bulk look-up each go through the whole exchange pipeline and reach the registry
adapter one by one, several at a time (the batch's window). ``BatchingAdapter`` holds each such
call for at most ``linger_s`` (or until ``max_batch`` are waiting), sends the group as one call
of the batch method, and gives each caller its own answer or its own refusal, as the single
method would have given it. A caller that is cancelled while waiting leaves the group before it
is sent. Operations without a batch method go straight to the transport.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.message import Message

from gateway.core.caller_text import fresh_caller_id
from gateway.core.contracts import BatchMethod, Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.ports import RegistryAdapter

__all__ = ["BatchTransport", "BatchingAdapter"]


class BatchTransport(RegistryAdapter, Protocol):
    """A transport that can call a batch method: one answer or refusal per request, in order."""

    async def call_batch(
        self, batch: BatchMethod, requests: Sequence[Message], *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> list[Message | GatewayError]: ...


@dataclass(slots=True)
class _Waiting:
    request: Message
    deadline: float
    metadata: Sequence[tuple[str, str]]
    answer: asyncio.Future[Message] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class BatchingAdapter:
    """A ``RegistryAdapter`` for bulk items: calls of one operation made together become one batch call.

    The transport is shared with the registry's single-call adapter, which owns (and closes) it.
    """

    def __init__(
        self, transport: BatchTransport, operations: Mapping[str, Operation], *, max_batch: int = 256,
        linger_s: float = 0.002,
    ) -> None:
        self._transport = transport
        self._batches = {name: op.batch for name, op in operations.items() if op.batch is not None}
        self._max_batch, self._linger_s = max_batch, linger_s
        self._waiting: dict[str, list[_Waiting]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def call(
        self, method: str, request: Message, *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> Message:
        if method not in self._batches:
            return await self._transport.call(method, request, timeout=timeout, metadata=metadata)
        item = _Waiting(request, time.monotonic() + timeout, metadata)
        group = self._waiting.setdefault(method, [])
        group.append(item)
        if len(group) >= self._max_batch:
            self._send(method)
        elif len(group) == 1:
            self._timers[method] = asyncio.get_running_loop().call_later(self._linger_s, self._send, method)
        return await item.answer   # cancelled: its future is cancelled and left out of the batch

    def _send(self, method: str) -> None:
        timer = self._timers.pop(method, None)
        if timer is not None:
            timer.cancel()
        group = [w for w in self._waiting.pop(method, []) if not w.answer.done()]
        if group:
            task = asyncio.create_task(self._call_batch(self._batches[method], group))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _call_batch(self, batch: BatchMethod, group: list[_Waiting]) -> None:
        timeout = max(w.deadline for w in group) - time.monotonic()
        try:
            if timeout <= 0:
                raise GatewayError(Reason.REGISTRY_TIMEOUT, "The caller's deadline leaves no time for the registry")
            results = await self._transport.call_batch(
                batch, [w.request for w in group], timeout=timeout, metadata=_batch_metadata(group[0].metadata)
            )
        except GatewayError as exc:   # one instance per caller: each future's traceback is its own
            results = [_copy_error(exc) for _ in group]
        except Exception:   # an unmapped failure: each caller's exchange records it as INTERNAL
            results = [GatewayError(Reason.INTERNAL) for _ in group]
        for w, result in zip(group, results, strict=True):
            if w.answer.done():
                continue
            if isinstance(result, GatewayError):
                w.answer.set_exception(result)
            else:
                w.answer.set_result(result)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in list(self._sending):
            task.cancel()
        for group in self._waiting.values():
            for w in group:
                w.answer.cancel()
        self._waiting.clear()


#: Of a caller's metadata, only the trace context goes with a batch that also holds other callers' items.
_TRACE_KEYS = frozenset({"traceparent", "tracestate"})


def _batch_metadata(metadata: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Neutral metadata for a batch call: a fresh request id of its own, and the trace context only
    (no caller's x-request-id or other values reach the registry for everyone's items)."""
    out = [(k, v) for k, v in metadata if k.lower() in _TRACE_KEYS]
    return [("x-request-id", fresh_caller_id("batch-")), *out]   # never one that holds a national id


def _copy_error(exc: GatewayError) -> GatewayError:
    return GatewayError(exc.reason, exc.detail, field=exc.field, retry_after=exc.retry_after, metadata=exc.metadata)
