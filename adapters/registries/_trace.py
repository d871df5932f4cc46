"""The CLIENT span around one registry call, and W3C trace context for the outgoing request."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from gateway.core.errors import GatewayError

__all__ = ["client_span", "outgoing_metadata"]

_tracer = trace.get_tracer("passerelle.registries")
#: Trace headers are ours to set: the caller's own ``traceparent`` is the parent of our spans.
_TRACE_KEYS = frozenset({"traceparent", "tracestate"})


@contextmanager
def client_span(name: str, attributes: Mapping[str, str | int]) -> Iterator[trace.Span]:
    """A CLIENT span, current while the call runs; a failure marks it with its reason code only.

    Unsampled exchanges get none: the (non-recording) server span's context is propagated instead,
    so the registry still sees the trace id.
    """
    parent = trace.get_current_span()
    if not parent.is_recording():
        yield parent
        return
    with _tracer.start_as_current_span(
        name,
        kind=SpanKind.CLIENT,
        attributes=dict(attributes),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except GatewayError as exc:
            span.set_status(StatusCode.ERROR, str(exc.reason))
            span.set_attribute("passerelle.reason", str(exc.reason))
            raise


def outgoing_metadata(metadata: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """``metadata`` without any inbound trace headers, plus the current span's W3C context."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(k, v) for k, v in metadata if k not in _TRACE_KEYS] + list(carrier.items())
