"""Composition of telemetry on a built gateway: metrics and ``/metrics``, front-door spans, ops records and
their API (``gateway.application.ops``), per-registry readiness. Part of the composition root: telemetry
set-up is chosen here, the telemetry itself lives in ``observability``. The process-wide tracer provider is
configured once by the CLI (``serve``)."""

from __future__ import annotations

import os
from typing import Any

from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2

from adapters.stores.ops_store import open_ops_store
from gateway.application.ops import ops_binding
from gateway.application.runtime import Gateway
from gateway.core.clock import now_us
from gateway.core.contracts import load_generated_modules
from gateway.entrypoints.routes_metrics import metrics_installer
from observability.exchange_telemetry import MetricsObserver
from observability.frontdoor import GrpcServerTelemetry
from observability.metrics import GatewayMetrics, otlp_metric_readers
from observability.ops import OpsRecorder
from observability.registry_health import RegistryHealth, RegistryProbe

__all__ = ["install_observability"]


def _grpc_methods(gateway: Gateway) -> set[str]:
    """Every method the gRPC door serves and measures (read once all features have added theirs)."""
    load_generated_modules()
    pool = descriptor_pool.Default()
    names = {op.grpc_path for op in gateway.operations.values()}
    for b in gateway.bindings:
        names |= {f"/{b.service}/{m.name}" for m in pool.FindServiceByName(b.service).methods}
    if gateway.bulk is not None:   # served apart from the bindings (server streaming)
        bulk = pool.FindServiceByName("passerelle.gateway.v1.BulkExchange")
        names |= {f"/{bulk.full_name}/{m.name}" for m in bulk.methods}
    health = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    return names | {f"/{health}/Check"}


def _probes(gateway: Gateway) -> list[RegistryProbe]:
    return [
        RegistryProbe(r.id, r.adapter, r.target if r.adapter == "grpc" else r.base_url, r.contract)
        for r in gateway.config.registries
    ]


def _gauges(gateway: Gateway, metrics: GatewayMetrics, health: RegistryHealth, ops: Any) -> None:
    writer = getattr(gateway.audit, "writer", None)
    if writer is not None:
        metrics.gauge(
            "passerelle.audit.queue.depth",
            "Audit records waiting for the writer",
            lambda: [({}, float(writer.queue_depth))],
        )
        writer.on_commit = lambda n, seconds: metrics.audit_commit.record(seconds)
    metrics.gauge(
        "passerelle.ops.queue.depth",
        "Operational records waiting to be written",
        lambda: [({}, float(ops.queue_depth))],
    )
    metrics.counter(
        "passerelle.ops.dropped", "Operational records dropped (writer behind)", lambda: [({}, float(ops.dropped))]
    )
    metrics.gauge("passerelle.registry.up", "1 when the registry is believed up", health.up)
    metrics.counter(
        "passerelle.security.events",
        "Refusals before authentication",
        lambda: [({"reason": r, "protocol": p}, float(n)) for (r, p), n in list(gateway.security.counts.items())],
    )
    verifier = gateway.verifier
    if hasattr(verifier, "cache_hits") and hasattr(verifier, "cache_misses"):
        metrics.counter(
            "passerelle.cache.requests",
            "Cache lookups by result",
            lambda: [
                ({"cache": "token", "result": "hit"}, float(verifier.cache_hits)),
                ({"cache": "token", "result": "miss"}, float(verifier.cache_misses)),
            ],
        )


async def install_observability(gateway: Gateway) -> None:
    env = os.environ  # read once, here at start-up
    metrics = GatewayMetrics(service_name="passerelle-gateway", push_readers=otlp_metric_readers(env))
    gateway.metrics = metrics   # features declare their own instruments on it (change notifications)
    breakers = {r.id: getattr(r.adapter, "breaker", None) for r in gateway.registries.values()}
    health = RegistryHealth(
        _probes(gateway), clock_us=now_us, breakers={k: v for k, v in breakers.items() if v is not None},
        policy=gateway.config.gateway.readiness,
    )
    ops = open_ops_store(gateway.config.gateway.audit, gateway.config.path)
    await ops.start()

    def purposes() -> Any:
        return gateway.pipeline.policy().purposes

    gateway.observers.add(MetricsObserver(metrics, health, known_purposes=purposes))
    versions = {name: op.version for name, op in gateway.operations.items()}
    gateway.observers.add(OpsRecorder(ops, versions=lambda s: versions.get(s, ""), known_purposes=purposes))
    _gauges(gateway, metrics, health, ops)
    gateway.grpc_interceptors.append(GrpcServerTelemetry(lambda: _grpc_methods(gateway), metrics))
    gateway.rest_installers.append(metrics_installer(metrics))
    gateway.readiness.append(health.readiness)
    gateway.bindings.append(ops_binding(ops, now_us))

    async def close() -> None:
        await health.close()
        await ops.close()
        metrics.shutdown()

    gateway.closers.append(close)
