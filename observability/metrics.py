"""Metrics: one OpenTelemetry ``MeterProvider`` per gateway, scraped at ``/metrics`` and pushed by OTLP.

Instruments (Prometheus names in brackets):

* ``rpc.server.call.duration`` [rpc_server_call_duration_seconds] and
  ``http.server.request.duration`` [http_server_request_duration_seconds]:
  the semantic-convention front-door histograms;
* ``passerelle.exchanges`` [passerelle_exchanges_total] by consumer, provider,
  service, purpose, outcome, reason and protocol; ``passerelle.exchange.duration``;
* ``passerelle.registry.call.duration`` and ``passerelle.registry.calls`` by
  registry and result (availability = calls without a registry failure ÷ calls);
  ``passerelle.registry.up`` from the readiness probes;
* ``passerelle.audit.append.duration`` (what an exchange waits),
  ``passerelle.audit.commit.duration`` (one group-commit transaction) and
  ``passerelle.audit.queue.depth``;
* ``passerelle.cache.requests`` by cache and result (hit | miss), for caches that count;
* ``passerelle.security.events`` by reason and protocol.

Exposition uses prometheus_client's text writer over the SDK's collected data
(a private ``CollectorRegistry`` per gateway: no process-wide state).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    InMemoryMetricReader,
    MetricReader,
    PeriodicExportingMetricReader,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

__all__ = ["DURATION_BUCKETS", "GatewayMetrics", "ScrapeReader", "otlp_metric_readers", "prometheus_name"]

#: Seconds: from 0.5 ms (a cached refusal) to 10 s (a registry timeout).
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


class ScrapeReader(InMemoryMetricReader):
    """A pull reader: the SDK collects when ``/metrics`` is scraped, never in the background."""


def otlp_metric_readers(env: Mapping[str, str]) -> list[MetricReader]:
    """An OTLP push reader when ``OTEL_METRICS_EXPORTER``/``OTEL_EXPORTER_OTLP_*ENDPOINT`` ask for one."""
    names = env.get("OTEL_METRICS_EXPORTER", "").strip().lower()
    if not names:
        endpoint = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        names = "otlp" if endpoint else "none"
    if "otlp" not in {n.strip() for n in names.split(",")}:
        return []
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    )
    exporter: Any
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        exporter = GrpcExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

        exporter = HttpExporter()
    return [PeriodicExportingMetricReader(exporter)]  # interval: OTEL_METRIC_EXPORT_INTERVAL


def prometheus_name(name: str, unit: str) -> str:
    """``rpc.server.call.duration`` + ``s`` -> ``rpc_server_call_duration_seconds``."""
    base = _INVALID.sub("_", name)
    suffix = _UNIT_SUFFIX.get(unit, "")
    return f"{base}_{suffix}" if suffix and not base.endswith(suffix) else base


Gauges = Callable[[], Iterable[tuple[Mapping[str, str], float]]]


class GatewayMetrics:
    """The gateway's instruments on a provider of its own; ``prometheus_text()`` for a scrape."""

    def __init__(self, *, service_name: str, push_readers: Sequence[MetricReader] = ()) -> None:
        self.scrape = ScrapeReader()
        self.provider = MeterProvider(
            metric_readers=[self.scrape, *push_readers], resource=Resource.create({"service.name": service_name})
        )
        meter = self.provider.get_meter("passerelle")

        def seconds(name: str, description: str) -> Any:
            return meter.create_histogram(
                name, unit="s", description=description, explicit_bucket_boundaries_advisory=DURATION_BUCKETS
            )

        self.rpc_duration = seconds("rpc.server.call.duration", "gRPC calls served, by method and status")
        self.http_duration = seconds("http.server.request.duration", "HTTP requests served, by route and status")
        self.exchanges = meter.create_counter(
            "passerelle.exchanges", unit="{exchange}", description="Exchanges by authenticated consumers"
        )
        self.exchange_duration = seconds("passerelle.exchange.duration", "Exchange time inside the gateway")
        self.registry_duration = seconds("passerelle.registry.call.duration", "Registry calls, by registry and result")
        self.registry_calls = meter.create_counter(
            "passerelle.registry.calls", unit="{call}", description="Registry calls, by registry and result"
        )
        self.audit_append = seconds("passerelle.audit.append.duration", "Time an exchange waits for its audit commit")
        self.audit_commit = seconds("passerelle.audit.commit.duration", "One group-commit transaction")
        self.message_size = meter.create_histogram(
            "passerelle.message.size",
            unit="By",
            description="Serialised message sizes, by direction",
            explicit_bucket_boundaries_advisory=(64, 256, 1024, 4096, 16384, 65536, 262144, 1048576),
        )
        self._meter = meter

    def gauge(self, name: str, description: str, read: Gauges, unit: str = "") -> None:
        """An observable gauge read at each collection (queue depth, registry up ...)."""
        self._meter.create_observable_gauge(name, [_callback(read)], unit=unit, description=description)

    def counter(self, name: str, description: str, read: Gauges, unit: str = "") -> None:
        """An observable counter for totals kept elsewhere (security events, cache hits)."""
        self._meter.create_observable_counter(name, [_callback(read)], unit=unit, description=description)

    def prometheus_text(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self.scrape))
        return generate_latest(registry)

    def shutdown(self) -> None:
        self.provider.shutdown()


def _callback(read: Gauges) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, dict(attributes)) for attributes, value in read()]

    return observe


class _Collector:
    """prometheus_client collector over one OpenTelemetry collection."""

    def __init__(self, reader: ScrapeReader) -> None:
        self._reader = reader

    def collect(self) -> Iterator[Metric]:
        data = self._reader.get_metrics_data()
        if data is None:
            return
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    family = _family(prometheus_name(m.name, m.unit or ""), m.description or m.name, m.data)
                    if family is not None:
                        yield family


def _label_names(points: Sequence[Any]) -> list[str]:
    return sorted({_INVALID.sub("_", k) for p in points for k in (p.attributes or {})})


def _label_values(point: Any, names: list[str]) -> list[str]:
    attrs = {_INVALID.sub("_", k): str(v) for k, v in (point.attributes or {}).items()}
    return [attrs.get(n, "") for n in names]


def _family(name: str, doc: str, data: Any) -> Metric | None:
    points = list(data.data_points)
    labels = _label_names(points)
    family: Any
    if isinstance(data, Histogram):
        family = HistogramMetricFamily(name, doc, labels=labels)
        for p in points:
            cumulative, buckets = 0, []
            for bound, count in zip(p.explicit_bounds, p.bucket_counts, strict=False):
                cumulative += count
                buckets.append((_float(bound), cumulative))
            buckets.append(("+Inf", p.count))
            family.add_metric(_label_values(p, labels), buckets, p.sum)
        return family  # type: ignore[no-any-return]
    if isinstance(data, Sum) and data.is_monotonic:
        family = CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)
    elif isinstance(data, Sum | Gauge):
        family = GaugeMetricFamily(name, doc, labels=labels)
    else:
        return None
    for p in points:
        family.add_metric(_label_values(p, labels), p.value)
    return family  # type: ignore[no-any-return]


def _float(value: float) -> str:
    return repr(float(value))
