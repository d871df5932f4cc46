"""The pre-aggregated instruments export what the OpenTelemetry SDK's own would, at a scrape and by OTLP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
    Sum,
)
from prometheus_client.parser import text_string_to_metric_families

from observability.metrics import (
    DURATION_BUCKETS,
    GatewayMetrics,
    PreAggregatedCounter,
    PreAggregatedHistogram,
    WithPreAggregated,
)

_LABELS = st.sampled_from([{"service": "a", "outcome": "ok"}, {"service": "b", "outcome": "refused"}, {}])
# Values on and around the bucket bounds, where "(lower, upper]" matters.
_VALUES = st.one_of(st.sampled_from([*DURATION_BUCKETS, 0.0, 20.0]), st.floats(0, 12, allow_nan=False))


def _sdk_points(values: Sequence[tuple[float, dict[str, str]]]) -> dict[frozenset[Any], HistogramDataPoint]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    h = provider.get_meter("t").create_histogram("h", unit="s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
    for value, labels in values:
        h.record(value, labels)
    data = reader.get_metrics_data()
    points: dict[frozenset[Any], HistogramDataPoint] = {}
    if data is not None:
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    assert isinstance(m.data, Histogram)
                    points |= {frozenset((p.attributes or {}).items()): p for p in m.data.data_points}
    provider.shutdown()
    return points


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_VALUES, _LABELS), max_size=40))
def test_a_pre_aggregated_histogram_equals_the_sdks(values: list[tuple[float, dict[str, str]]]) -> None:
    ours = PreAggregatedHistogram("h", "s", "", DURATION_BUCKETS, start_ns=0)
    for value, labels in values:
        ours.record(value, labels)
    metric = ours.metric(1)
    theirs = _sdk_points(values)
    if metric is None:
        assert theirs == {}
        return
    assert isinstance(metric.data, Histogram)
    mine = {frozenset((p.attributes or {}).items()): p for p in metric.data.data_points}
    assert mine.keys() == theirs.keys()
    for key, p in mine.items():
        q = theirs[key]
        assert (list(p.bucket_counts), p.count, p.min, p.max) == (list(q.bucket_counts), q.count, q.min, q.max)
        assert abs(p.sum - q.sum) < 1e-9
        assert list(p.explicit_bounds) == list(q.explicit_bounds)


def test_a_pre_aggregated_counter_sums_per_attribute_set() -> None:
    c = PreAggregatedCounter("c", "{x}", "", start_ns=0)
    c.add(2, {"a": "1"})
    c.add(1, {"a": "1"})
    c.add(5, {"a": "2"})
    metric = c.metric(1)
    assert metric is not None and isinstance(metric.data, Sum) and metric.data.is_monotonic
    assert {(p.attributes or {})["a"]: p.value for p in metric.data.data_points if isinstance(p, NumberDataPoint)} \
        == {"1": 3, "2": 5}


def test_the_scrape_shows_the_pre_aggregated_series_as_before() -> None:
    m = GatewayMetrics(service_name="t")
    m.exchanges.add(1, {"consumer": "cns", "outcome": "ok"})
    m.exchange_duration.record(0.001, {"service": "s", "outcome": "ok"})   # on a bound: the 0.001 bucket
    m.message_size.record(300, {"direction": "request", "service": "s"})
    families = {f.name: f for f in text_string_to_metric_families(m.prometheus_text().decode())}
    [total] = [s for s in families["passerelle_exchanges"].samples if s.name == "passerelle_exchanges_total"]
    assert total.value == 1 and total.labels == {"consumer": "cns", "outcome": "ok"}
    buckets = {s.labels["le"]: s.value for s in families["passerelle_exchange_duration_seconds"].samples
               if s.name.endswith("_bucket")}
    assert buckets["0.0005"] == 0 and buckets["0.001"] == 1 and buckets["+Inf"] == 1
    sizes = {s.labels["le"]: s.value for s in families["passerelle_message_size_bytes"].samples
             if s.name.endswith("_bucket")}
    assert sizes["256.0"] == 0 and sizes["1024.0"] == 1
    m.shutdown()


class _Captured(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.exports: list[MetricsData] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self.exports.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def test_an_otlp_push_carries_the_pre_aggregated_series_with_the_gateways_resource() -> None:
    captured = _Captured()
    reader = PeriodicExportingMetricReader(WithPreAggregated(captured), export_interval_millis=3_600_000)
    m = GatewayMetrics(service_name="passerelle-test", push_readers=[reader])
    m.exchanges.add(3, {"consumer": "cns"})
    m.audit_commit.record(0.002)
    reader.force_flush()
    names = {metric.name: metric for d in captured.exports for rm in d.resource_metrics
             for sm in rm.scope_metrics for metric in sm.metrics}  # fmt: skip
    assert {"passerelle.exchanges", "passerelle.audit.commit.duration"} <= names.keys()
    resources = {rm.resource.attributes.get("service.name") for d in captured.exports for rm in d.resource_metrics}
    assert resources == {"passerelle-test"}
    counter = names["passerelle.exchanges"].data
    assert isinstance(counter, Sum)
    assert [p.value for p in counter.data_points] == [3]
    m.shutdown()


def test_an_exporter_asking_for_delta_gets_what_was_recorded_since_its_last_export() -> None:
    from opentelemetry.sdk.metrics import Counter as SdkCounter
    from opentelemetry.sdk.metrics import Histogram as SdkHistogram
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    class _Delta(_Captured):
        def __init__(self) -> None:
            MetricExporter.__init__(self, preferred_temporality={
                SdkCounter: AggregationTemporality.DELTA, SdkHistogram: AggregationTemporality.DELTA})
            self.exports = []

    captured = _Delta()
    reader = PeriodicExportingMetricReader(WithPreAggregated(captured), export_interval_millis=3_600_000)
    m = GatewayMetrics(service_name="t", push_readers=[reader])

    def exported() -> dict[str, Any]:
        reader.force_flush()
        last = captured.exports[-1]
        return {metric.name: metric.data for rm in last.resource_metrics for sm in rm.scope_metrics
                for metric in sm.metrics}  # fmt: skip

    m.exchanges.add(3, {"consumer": "cns"})
    m.audit_commit.record(0.002)
    m.audit_commit.record(0.004)
    first = exported()
    assert [p.value for p in first["passerelle.exchanges"].data_points] == [3]
    [h] = first["passerelle.audit.commit.duration"].data_points
    assert (h.count, round(h.sum, 6), h.min, h.max) == (2, 0.006, 0.002, 0.004)
    assert first["passerelle.exchanges"].aggregation_temporality is AggregationTemporality.DELTA

    m.exchanges.add(2, {"consumer": "cns"})
    m.audit_commit.record(0.001)
    second = exported()
    assert [p.value for p in second["passerelle.exchanges"].data_points] == [2]
    [h] = second["passerelle.audit.commit.duration"].data_points
    assert (h.count, round(h.sum, 6), h.min, h.max) == (1, 0.001, 0.001, 0.001)   # this interval's min and max
    assert sum(h.bucket_counts) == 1

    third = exported()   # nothing new: no points
    assert "passerelle.exchanges" not in third and "passerelle.audit.commit.duration" not in third
    # The scrape stays cumulative.
    assert b'passerelle_exchanges_total{consumer="cns"} 5.0' in m.prometheus_text()
    m.shutdown()
