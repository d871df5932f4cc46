"""Telemetry building blocks without sockets: sampling, exporters, metric names, percentiles, ops records."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from prometheus_client.parser import text_string_to_metric_families

from adapters.stores.ops_store import InMemoryOpsStore
from gateway.core.quantiles import LogHistogram
from gateway.core.types import AuditRecord, EventKind, ExchangeTiming, Outcome
from observability.labels import OTHER, known_or_other
from observability.metrics import GatewayMetrics, prometheus_name
from observability.ops import OpsRecorder
from observability.tracing import exporters_from_env, sampler_from_env


def test_no_exporter_and_no_sampling_unless_configured() -> None:
    assert exporters_from_env({}) == []
    assert sampler_from_env({}, exporting=False) is ALWAYS_OFF
    assert isinstance(sampler_from_env({}, exporting=True), ParentBased)


def test_an_otlp_endpoint_alone_turns_the_otlp_exporter_on() -> None:
    [(exporter, batched)] = exporters_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert type(exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    assert batched
    [(grpc_exporter, _)] = exporters_from_env({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert type(grpc_exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")


def test_ten_percent_is_a_parent_based_ratio() -> None:
    sampler = sampler_from_env(
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}, exporting=True
    )
    assert isinstance(sampler, ParentBased)
    assert "TraceIdRatioBased{0.1}" in sampler.get_description()  # type: ignore[no-untyped-call]  # unannotated in otel-sdk
    assert isinstance(
        sampler_from_env({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"}, exporting=False),
        TraceIdRatioBased,
    )


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_SAMPLER": "sometimes"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
        {"OTEL_TRACES_EXPORTER": "jaeger"},
    ],
)
def test_a_bad_setting_is_refused_with_its_name(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="OTEL_"):
        sampler_from_env(env, exporting=True)
        exporters_from_env(env)


def test_prometheus_names_carry_the_unit() -> None:
    assert prometheus_name("rpc.server.call.duration", "s") == "rpc_server_call_duration_seconds"
    assert prometheus_name("passerelle.exchanges", "{exchange}") == "passerelle_exchanges"
    assert prometheus_name("passerelle.message.size", "By") == "passerelle_message_size_bytes"


def test_caller_strings_become_labels_only_when_known() -> None:
    assert known_or_other("student-aid", {"student-aid"}) == "student-aid"
    assert known_or_other("19900101001 23", {"student-aid"}) == OTHER
    assert known_or_other("", {"student-aid"}) == ""


@given(
    st.lists(st.integers(min_value=0, max_value=10**8), min_size=1, max_size=300), st.sampled_from([1, 50, 95, 99, 100])
)
def test_percentiles_are_never_below_and_at_most_one_percent_above(values: list[int], p: int) -> None:
    h = LogHistogram()
    for v in values:
        h.add(v)
    exact = sorted(values)[max(1, math.ceil(p / 100 * len(values))) - 1]
    got = h.percentile(p)
    assert got is not None
    assert max(exact, 1) <= got <= max(exact, 1) * 1.01


def test_the_exposition_parses_and_counts_per_label_set() -> None:
    metrics = GatewayMetrics(service_name="t")
    labels = {"consumer": "cedies", "outcome": "ok", "reason": ""}
    metrics.exchanges.add(2, labels)
    metrics.exchanges.add(1, {**labels, "outcome": "refused", "reason": "NO_MANDATE"})
    metrics.rpc_duration.record(0.003, {"rpc.method": "GetPerson"})
    families = {f.name: f for f in text_string_to_metric_families(metrics.prometheus_text().decode())}
    exchanges = {
        (s.labels["outcome"], s.labels["reason"]): s.value
        for s in families["passerelle_exchanges"].samples
        if s.name.endswith("_total")
    }
    assert exchanges == {("ok", ""): 2.0, ("refused", "NO_MANDATE"): 1.0}
    buckets = [s for s in families["rpc_server_call_duration_seconds"].samples if s.name.endswith("_bucket")]
    assert {s.labels["le"]: s.value for s in buckets}["0.0025"] == 0.0
    assert {s.labels["le"]: s.value for s in buckets}["0.005"] == 1.0
    metrics.shutdown()


def test_an_exchange_becomes_an_ops_record_with_gateway_and_registry_times() -> None:
    store = InMemoryOpsStore()
    recorder = OpsRecorder(store, versions=lambda s: "v1", known_purposes=lambda: {"student-aid"})
    record = AuditRecord(
        time_us=10_000_000,
        kind=EventKind.EXCHANGE,
        consumer="cedies",
        service="s/M",
        purpose="nid-in-purpose",
        legal_basis="A6-1-e",
        legal_reference="",
        subject="pseudo",
        consent_id="",
        case_id="",
        officer_id="",
        request_id="r1",
        trace_id="t1",
        fields=(),
        outcome=Outcome.ERROR,
        reason="REGISTRY_TIMEOUT",
        latency_us=4_000,
        protocol="rest",
    )
    recorder.on_exchange(record, "CTIE", ExchangeTiming("rnpp", 500, 3_500, 20, 0, 0, 300))
    [ops] = store.records
    assert (ops.request_in_us, ops.request_out_us, ops.response_in_us, ops.response_out_us) == (
        9_996_000,
        9_996_500,
        9_999_500,
        10_000_300,
    )
    assert (ops.registry_us, ops.succeeded, ops.fault_code, ops.purpose) == (3_000, False, "REGISTRY_TIMEOUT", OTHER)


async def test_a_grpc_call_its_client_ends_is_measured_cancelled_not_unknown() -> None:
    """A change-event stream ends when the agency closes it (its task is cancelled, no status set):
    measured CANCELLED (1), not UNKNOWN (2), an error of ours on every dashboard."""
    import asyncio
    from types import SimpleNamespace
    from typing import Any

    from observability.frontdoor import GrpcServerTelemetry

    recorded: list[dict[str, Any]] = []
    metrics: Any = SimpleNamespace(rpc_duration=SimpleNamespace(record=lambda _s, attrs: recorded.append(attrs)))
    context: Any = SimpleNamespace(invocation_metadata=lambda: (), code=lambda: None)

    async def stream(request: Any, ctx: Any) -> None:
        raise asyncio.CancelledError

    behaviour = GrpcServerTelemetry(lambda: {"/p.S/Stream"}, metrics)._wrap(stream, "/p.S/Stream")
    with pytest.raises(asyncio.CancelledError):
        await behaviour(b"", context)
    assert recorded[-1]["rpc.grpc.status_code"] == 1
