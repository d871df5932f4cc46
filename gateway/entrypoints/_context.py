"""Turning a front door's headers into a protocol-neutral ``CallContext``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from opentelemetry import trace

from gateway.core.caller_text import caller_id_problem, fresh_caller_id
from gateway.core.errors import GatewayError, Reason
from gateway.core.pipeline import CallContext

__all__ = ["FORWARDED_HEADERS", "SINGLE_VALUED", "bearer_token", "binary_variant", "call_context", "echo_id",
           "refuse_bad_request_id", "repeated_single_valued"]

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
#: Headers passed on to the registry (W3C trace context and the correlation id).
FORWARDED_HEADERS = ("traceparent", "tracestate")
#: Keys the gateway reads as ONE value. Given twice, a proxy may read the first and the gateway the
#: last (REST and gRPC libraries differ), so such a request is refused on both doors (DUPLICATE_HEADER).
#: ``tracestate`` is not one of them: W3C trace context lets it be split over several headers. Nor is
#: ``traceparent``: gRPC's core keeps only the last one before any handler sees the metadata, so the REST
#: door's tracing takes the last one too (observability.frontdoor); it names a trace, never a decision.
SINGLE_VALUED = frozenset({
    "authorization", "dpop", "x-purpose", "x-fields", "x-consent-id", "x-case-id", "x-officer-id",
    "x-ai-system", "x-request-id", "content-type", "content-length",
    "content-encoding", "transfer-encoding", "host", "grpc-encoding", "grpc-timeout",
})


def repeated_single_valued(keys: Iterable[str]) -> str | None:
    """The first single-valued key given more than once (keys compared in lower case), or None."""
    seen: set[str] = set()
    for key in keys:
        name = key.lower()
        if name in SINGLE_VALUED:
            if name in seen:
                return name
            seen.add(name)
    return None


def binary_variant(keys: Iterable[str]) -> str | None:
    """The first ``NAME-bin`` key whose ``NAME`` the gateway reads (``x-purpose-bin`` ...), or None.

    gRPC delivers ``-bin`` keys as bytes, which the doors do not read: beside ``x-purpose`` a
    ``x-purpose-bin`` would be a second value that a proxy or a log may read instead.
    """
    for key in keys:
        name = key.lower()
        if name.endswith("-bin") and name.removesuffix("-bin") in SINGLE_VALUED:
            return name
    return None


def bearer_token(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    # "DPoP" is the scheme of DPoP-bound tokens (RFC 9449); the binding itself is in the token's cnf.
    return token.strip() if scheme.lower() in ("bearer", "dpop") and token.strip() else ""


def _given(header: Callable[[str], str | None], name: str) -> str:
    """A caller-chosen identifier as given (trimmed): the core checks it and refuses a bad one on both doors."""
    return (header(name) or "").strip()


def call_context(protocol: str, header: Callable[[str], str | None], timeout_s: float | None) -> CallContext:
    """The call as the core sees it. ``request_id`` is the caller's as given (the core refuses a bad
    one, CALLER_FIELD_INVALID, like the other caller ids); the id echoed in the answer and sent to the
    registry is always a safe one (``echo_id``): the caller's when valid, else a fresh one."""
    given = _given(header, "x-request-id")
    echoed = given if given and caller_id_problem(given) is None else fresh_caller_id()
    traceparent = header("traceparent") or ""
    match = _TRACEPARENT.match(traceparent)
    # The registry adapters inject the current span's context (its parent is the caller's traceparent).
    metadata = [("x-request-id", echoed)]
    current = trace.get_current_span().get_span_context()
    fields = header("x-fields") or ""
    return CallContext(
        protocol=protocol,
        token=bearer_token(header("authorization")),
        purpose=(header("x-purpose") or "").strip(),
        consent_id=_given(header, "x-consent-id"),
        case_id=_given(header, "x-case-id"),
        officer_id=_given(header, "x-officer-id"),
        request_id=given or echoed,
        trace_id=f"{current.trace_id:032x}" if current.is_valid else (match.group(1) if match else ""),
        ai_system=_given(header, "x-ai-system"),
        field_mask=tuple(f.strip() for f in fields.split(",") if f.strip()),
        timeout_s=timeout_s,
        metadata=metadata,
    )


def echo_id(ctx: CallContext) -> str:
    """The request id an answer carries: never the caller's value unless it is a valid identifier."""
    return dict(ctx.metadata).get("x-request-id", "")


def refuse_bad_request_id(ctx: CallContext) -> None:
    """For routes outside the exchange pipeline: the same refusal the core gives a bad ``x-request-id``."""
    problem = caller_id_problem(ctx.request_id)
    if problem:
        raise GatewayError(Reason.CALLER_FIELD_INVALID, f"x-request-id {problem}", field="x-request-id")
