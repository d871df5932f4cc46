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

The instruments updated on every exchange (the front-door histograms, the exchange,
registry, audit-append and message-size series) are *pre-aggregated*: a dict lookup, a
bisection and three additions under a lock per update (≈ 1–2 µs) instead of the SDK's
synchronous instrument path (≈ 7–9 µs each: attribute hashing, views, aggregation objects).
They are exported as the same series — cumulative OpenTelemetry ``Sum`` and explicit-bucket
``Histogram`` data points, bucket ``i`` holding ``(bounds[i-1], bounds[i]]`` as the SDK's — both
at a scrape and to an OTLP push reader (its exporter adds them to each export).
"""

from __future__ import annotations

import bisect
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import Counter as SdkCounter
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.metrics.export import Metric as OtelMetric
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

__all__ = [
    "DURATION_BUCKETS",
    "GatewayMetrics",
    "PreAggregatedCounter",
    "PreAggregatedHistogram",
    "ScrapeReader",
    "otlp_metric_readers",
    "prometheus_name",
]

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
    # interval: OTEL_METRIC_EXPORT_INTERVAL; the pre-aggregated series join each export
    return [PeriodicExportingMetricReader(WithPreAggregated(exporter))]


_Attributes = Mapping[str, str | int | float | bool] | None


def _key(attributes: _Attributes) -> tuple[tuple[str, str | int | float | bool], ...]:
    return tuple(attributes.items()) if attributes else ()


class PreAggregatedCounter:
    """A monotonic counter kept in a dict per attribute set; ``add`` as the SDK counter's.

    Thread-safe (one lock). Exported as a cumulative OpenTelemetry ``Sum`` (``metric``)."""

    def __init__(self, name: str, unit: str, description: str, start_ns: int) -> None:
        self.name, self.unit, self.description, self._start_ns = name, unit, description, start_ns
        self._values: dict[tuple[tuple[str, str | int | float | bool], ...], float] = {}
        self._lock = threading.Lock()

    def add(self, amount: float, attributes: _Attributes = None) -> None:
        key = _key(attributes)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    @property
    def series(self) -> int:
        return len(self._values)

    def metric(self, now_ns: int) -> OtelMetric | None:
        with self._lock:
            values = list(self._values.items())
        if not values:
            return None
        points = [NumberDataPoint(attributes=dict(k), start_time_unix_nano=self._start_ns, time_unix_nano=now_ns,
                                  value=v) for k, v in values]  # fmt: skip
        data = Sum(data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE, is_monotonic=True)
        return OtelMetric(name=self.name, description=self.description, unit=self.unit, data=data)

    def delta_metric(self, now_ns: int, since_ns: int, last: dict[Any, list[float]]) -> OtelMetric | None:
        """What was added since the previous call with the same ``last`` (delta temporality)."""
        with self._lock:
            values = list(self._values.items())
        points = []
        for k, v in values:
            prev = last.get(k, [0.0])[0]
            if v - prev <= 0:
                continue
            points.append(NumberDataPoint(attributes=dict(k), start_time_unix_nano=since_ns, time_unix_nano=now_ns,
                                          value=v - prev))  # fmt: skip
            last[k] = [v]
        if not points:
            return None
        data = Sum(data_points=points, aggregation_temporality=AggregationTemporality.DELTA, is_monotonic=True)
        return OtelMetric(name=self.name, description=self.description, unit=self.unit, data=data)


class PreAggregatedHistogram:
    """An explicit-bucket histogram kept per attribute set; ``record`` as the SDK histogram's.

    Bucket ``i`` counts values in ``(bounds[i-1], bounds[i]]`` (the last one above every bound),
    with count, sum, min and max, as OpenTelemetry's explicit-bucket aggregation. Thread-safe."""

    def __init__(self, name: str, unit: str, description: str, bounds: Sequence[float], start_ns: int) -> None:
        self.name, self.unit, self.description, self._start_ns = name, unit, description, start_ns
        self._bounds = tuple(float(b) for b in bounds)
        self._n = len(self._bounds) + 1
        # per attribute set: [bucket counts ..., count, sum, min, max, min and max since the last delta export]
        self._series: dict[tuple[tuple[str, str | int | float | bool], ...], list[float]] = {}
        self._lock = threading.Lock()

    def record(self, value: float, attributes: _Attributes = None) -> None:
        key = _key(attributes)
        i = bisect.bisect_left(self._bounds, value)
        n = self._n
        with self._lock:
            s = self._series.get(key)
            if s is None:
                s = self._series[key] = [0] * n + [0, 0.0, math.inf, -math.inf, math.inf, -math.inf]
            s[i] += 1
            s[n] += 1
            s[n + 1] += value
            if value < s[n + 2]:
                s[n + 2] = value
            if value > s[n + 3]:
                s[n + 3] = value
            if value < s[n + 4]:
                s[n + 4] = value
            if value > s[n + 5]:
                s[n + 5] = value

    @property
    def series(self) -> int:
        return len(self._series)

    def metric(self, now_ns: int) -> OtelMetric | None:
        with self._lock:
            series = [(k, list(v)) for k, v in self._series.items()]
        if not series:
            return None
        n = self._n
        points = [HistogramDataPoint(attributes=dict(k), start_time_unix_nano=self._start_ns, time_unix_nano=now_ns,
                                     count=int(v[n]), sum=v[n + 1], bucket_counts=[int(c) for c in v[:n]],
                                     explicit_bounds=self._bounds, min=v[n + 2], max=v[n + 3])
                  for k, v in series]  # fmt: skip
        data = Histogram(data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE)
        return OtelMetric(name=self.name, description=self.description, unit=self.unit, data=data)

    def delta_metric(self, now_ns: int, since_ns: int, last: dict[Any, list[float]]) -> OtelMetric | None:
        """What was recorded since the previous call with the same ``last`` (delta temporality): bucket
        counts, count and sum as differences, min and max of the interval; series with nothing new left out."""
        n = self._n
        with self._lock:
            series = []
            for k, v in self._series.items():
                series.append((k, list(v)))
                v[n + 4], v[n + 5] = math.inf, -math.inf
        points = []
        for k, v in series:
            prev = last.get(k) or [0] * n + [0, 0.0]
            if v[n] - prev[n] <= 0:
                continue
            points.append(HistogramDataPoint(
                attributes=dict(k), start_time_unix_nano=since_ns, time_unix_nano=now_ns, count=int(v[n] - prev[n]),
                sum=v[n + 1] - prev[n + 1], bucket_counts=[int(v[i] - prev[i]) for i in range(n)],
                explicit_bounds=self._bounds, min=v[n + 4], max=v[n + 5]))  # fmt: skip
            last[k] = v[: n + 2]
        if not points:
            return None
        data = Histogram(data_points=points, aggregation_temporality=AggregationTemporality.DELTA)
        return OtelMetric(name=self.name, description=self.description, unit=self.unit, data=data)


class WithPreAggregated(MetricExporter):
    """An OTLP (or any) metric exporter whose exports also carry the pre-aggregated series.

    ``source`` is set by ``GatewayMetrics``: it returns those series' current ``Metric`` data."""

    def __init__(self, inner: MetricExporter) -> None:
        super().__init__(preferred_temporality=inner._preferred_temporality,
                         preferred_aggregation=inner._preferred_aggregation)  # fmt: skip
        self.inner = inner
        self.source: Callable[[], list[OtelMetric]] = list
        #: The pre-aggregated instruments, for a delta export (set by ``GatewayMetrics``).
        self.instruments: Sequence[PreAggregatedCounter | PreAggregatedHistogram] = ()
        self.resource: Resource = Resource.get_empty()
        # The exporter asks for delta temporality (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE): each
        # export then carries what was recorded since the previous one, as the SDK's own instruments would.
        wanted = inner._preferred_temporality or {}
        self.delta = any(wanted.get(kind) is AggregationTemporality.DELTA for kind in (SdkCounter, SdkHistogram))
        self._last: dict[str, dict[Any, list[float]]] = {}
        self._since_ns = time.time_ns()

    def _extra(self) -> list[OtelMetric]:
        if not self.delta:
            return self.source()
        now_ns = time.time_ns()
        out = [m for m in (i.delta_metric(now_ns, self._since_ns, self._last.setdefault(i.name, {}))
                           for i in self.instruments) if m is not None]  # fmt: skip
        self._since_ns = now_ns
        return out

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        extra = self._extra()
        if extra:
            scope = ScopeMetrics(scope=InstrumentationScope("passerelle"), metrics=extra, schema_url="")
            first = metrics_data.resource_metrics[0] if metrics_data.resource_metrics else None
            resource = first.resource if first is not None else self.resource
            ours = ResourceMetrics(resource, [scope], schema_url="")
            metrics_data = MetricsData(resource_metrics=[*metrics_data.resource_metrics, ours])
        return self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


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
        resource = Resource.create({"service.name": service_name})
        self.provider = MeterProvider(metric_readers=[self.scrape, *push_readers], resource=resource)
        meter = self.provider.get_meter("passerelle")
        start_ns = time.time_ns()
        self._pre: list[PreAggregatedCounter | PreAggregatedHistogram] = []

        def seconds(name: str, description: str) -> PreAggregatedHistogram:
            return histogram(name, "s", description, DURATION_BUCKETS)

        def histogram(name: str, unit: str, description: str, bounds: Sequence[float]) -> PreAggregatedHistogram:
            instrument = PreAggregatedHistogram(name, unit, description, bounds, start_ns)
            self._pre.append(instrument)
            return instrument

        def counter(name: str, unit: str, description: str) -> PreAggregatedCounter:
            instrument = PreAggregatedCounter(name, unit, description, start_ns)
            self._pre.append(instrument)
            return instrument

        self.rpc_duration = seconds("rpc.server.call.duration", "gRPC calls served, by method and status")
        self.http_duration = seconds("http.server.request.duration", "HTTP requests served, by route and status")
        self.exchanges = counter("passerelle.exchanges", "{exchange}", "Exchanges by authenticated consumers")
        self.exchange_duration = seconds("passerelle.exchange.duration", "Exchange time inside the gateway")
        self.registry_duration = seconds("passerelle.registry.call.duration", "Registry calls, by registry and result")
        self.registry_calls = counter("passerelle.registry.calls", "{call}", "Registry calls, by registry and result")
        self.audit_append = seconds("passerelle.audit.append.duration", "Time an exchange waits for its audit commit")
        self.audit_commit = seconds("passerelle.audit.commit.duration", "One group-commit transaction")
        self.message_size = histogram("passerelle.message.size", "By", "Serialised message sizes, by direction",
                                      (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576))
        # Always one SDK series (so an OTLP collection is never empty and the export always runs): how
        # many attribute sets the pre-aggregated instruments hold (their cardinality, for ops).
        meter.create_observable_gauge(
            "passerelle.metrics.series", [_callback(lambda: [({}, float(sum(i.series for i in self._pre)))])],
            unit="{series}", description="Attribute sets held by the pre-aggregated instruments")
        for reader in push_readers:
            exporter = getattr(reader, "_exporter", None)
            if isinstance(exporter, WithPreAggregated):
                exporter.source, exporter.resource, exporter.instruments = self.pre_aggregated, resource, self._pre
        self._meter = meter

    def gauge(self, name: str, description: str, read: Gauges, unit: str = "") -> None:
        """An observable gauge read at each collection (queue depth, registry up ...)."""
        self._meter.create_observable_gauge(name, [_callback(read)], unit=unit, description=description)

    def counter(self, name: str, description: str, read: Gauges, unit: str = "") -> None:
        """An observable counter for totals kept elsewhere (security events, cache hits)."""
        self._meter.create_observable_counter(name, [_callback(read)], unit=unit, description=description)

    def pre_aggregated(self) -> list[OtelMetric]:
        """The pre-aggregated series now, as OpenTelemetry ``Metric`` data (cumulative)."""
        now_ns = time.time_ns()
        return [m for m in (i.metric(now_ns) for i in self._pre) if m is not None]

    def prometheus_text(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self.scrape, self.pre_aggregated))
        return generate_latest(registry)

    def shutdown(self) -> None:
        self.provider.shutdown()


def _callback(read: Gauges) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, dict(attributes)) for attributes, value in read()]

    return observe


class _Collector:
    """prometheus_client collector over one OpenTelemetry collection."""

    def __init__(self, reader: ScrapeReader, pre_aggregated: Callable[[], list[OtelMetric]]) -> None:
        self._reader = reader
        self._pre_aggregated = pre_aggregated

    def collect(self) -> Iterator[Metric]:
        data = self._reader.get_metrics_data()
        metrics = [m for rm in (data.resource_metrics if data is not None else ()) for sm in rm.scope_metrics
                   for m in sm.metrics]  # fmt: skip
        for m in [*metrics, *self._pre_aggregated()]:
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
