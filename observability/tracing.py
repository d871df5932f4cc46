"""Tracing set-up: one ``TracerProvider`` per process, configured once from the standard ``OTEL_*`` variables.

* Exporter: none by default. ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``,
  ``none``, comma-separated) chooses; when it is unset, setting
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) means ``otlp``.
  ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``:
  ``http/protobuf`` (default, port 4318) or ``grpc`` (port 4317).
  ``PASSERELLE_TRACES_FILE=PATH`` adds a JSON-lines file exporter (tests, demos).
* Sampling: ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` with the
  standard names (``parentbased_traceidratio`` with ``0.1`` is 10 %). Unset: every
  trace when something exports, none otherwise. Unsampled exchanges still carry
  a trace id, which the audit record and the logs keep, and still propagate the
  W3C context to the registries.

Instrumentation everywhere else uses only the OpenTelemetry API
(``trace.get_tracer``), so an unconfigured process pays for no-op spans only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

__all__ = ["FileSpanExporter", "configure_tracing", "exporters_from_env", "sampler_from_env"]


def _ratio(arg: str | None) -> float:
    try:
        value = float(arg) if arg else 1.0
    except ValueError:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG: not a number: {arg!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG: must be within 0..1, got {value}")
    return value


def sampler_from_env(env: Mapping[str, str], *, exporting: bool) -> Sampler:
    """The sampler named by ``OTEL_TRACES_SAMPLER``; default: all if exporting, else none."""
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    arg = env.get("OTEL_TRACES_SAMPLER_ARG")
    if not name:
        return ParentBased(ALWAYS_ON) if exporting else ALWAYS_OFF
    table: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
    }
    if name in table:
        return table[name]
    if name == "traceidratio":
        return TraceIdRatioBased(_ratio(arg))
    if name == "parentbased_traceidratio":
        return ParentBased(TraceIdRatioBased(_ratio(arg)))
    raise ValueError(f"OTEL_TRACES_SAMPLER: unknown sampler {name!r}")


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    )
    # The exporters read their endpoint, headers, TLS and timeout from the same OTEL_* variables.
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not grpc or http/protobuf")


def exporters_from_env(env: Mapping[str, str]) -> list[tuple[SpanExporter, bool]]:
    """The exporters the environment asks for, each with whether it should be batched."""
    names = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not names:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        names = "otlp" if endpoint else "none"
    out: list[tuple[SpanExporter, bool]] = []
    for name in (n.strip() for n in names.split(",")):
        if name == "otlp":
            out.append((_otlp_exporter(env), True))
        elif name == "console":
            out.append((ConsoleSpanExporter(), False))
        elif name not in ("none", ""):
            raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console or none)")
    if env.get("PASSERELLE_TRACES_FILE"):
        out.append((FileSpanExporter(Path(env["PASSERELLE_TRACES_FILE"])), False))
    return out


def configure_tracing(
    env: Mapping[str, str], *, service_name: str, extra: Sequence[SpanProcessor] = ()
) -> TracerProvider | None:
    """Install the process's tracer provider; None when ``OTEL_SDK_DISABLED=true``.

    Call once at start-up; the caller shuts the provider down on exit (flushes batches).
    """
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    exporters = exporters_from_env(env)
    sampler = sampler_from_env(env, exporting=bool(exporters) or bool(extra))
    attributes = {"service.name": env.get("OTEL_SERVICE_NAME") or service_name}
    provider = TracerProvider(sampler=sampler, resource=Resource.create(attributes))
    for exporter, batched in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter) if batched else SimpleSpanProcessor(exporter))
    for processor in extra:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


class FileSpanExporter(SpanExporter):
    """Finished spans as JSON lines (name, ids, kind, attributes), appended to one file.

    For tests and demos across processes; not a production exporter.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            if self._file is None:
                self._file = self._path.open("a", encoding="utf-8")
            for span in spans:
                self._file.write(json.dumps(span_summary(span)) + "\n")
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def span_summary(span: ReadableSpan) -> dict[str, object]:
    ctx = span.context
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}" if ctx else "",
        "span_id": f"{ctx.span_id:016x}" if ctx else "",
        "parent_span_id": f"{parent.span_id:016x}" if parent else "",
        "kind": span.kind.name,
        "service": str(span.resource.attributes.get("service.name", "")),
        "attributes": {
            k: v if isinstance(v, str | int | float | bool) else list(v)  # type: ignore[arg-type]
            for k, v in (span.attributes or {}).items()
        },
    }
