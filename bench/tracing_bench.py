"""What tracing costs per exchange: ``python -m bench.tracing_bench [--calls N]``.

``--pipeline`` measures the exchange pipeline alone, without sockets (front-door span,
stages, client span, in-memory audit): the precise figure for the spans themselves.

For each mode — no SDK (API no-ops), SDK with sampling off, 10 % and 100 %
(parent-based ratio; spans batched to an exporter that discards them) — a fresh
process runs the demo registries in a child process, the gateway in-process and
N serial gRPC GetPerson lookups; it reports the gateway process's CPU time and
the wall time per exchange. The client shares the process, so read the figures
as differences between modes: the client's cost is the same in each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

MODES = {
    "no-sdk": None,
    "off": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"},
    "10%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    "100%": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
}


def _tracing(mode: str) -> None:
    env = MODES[mode]
    if env is None:
        return
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from observability.tracing import configure_tracing

    class Discard(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    configure_tracing(env, service_name="bench", extra=[BatchSpanProcessor(Discard())])


async def _measure(calls: int, warmup: int) -> dict[str, float]:
    import grpc

    from gateway._pb.registry.population.v1 import population_pb2, population_pb2_grpc
    from gateway.bootstrap import resolve_demo_addresses
    from gateway.config import load_config
    from gateway.demo.data import generate
    from gateway.demo.setup import demo_token, ensure_demo
    from gateway.entrypoints.server import start_gateway

    data = generate(20260101, 400)
    nid = data.persons[0].national_id
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.demo.registries", "--persons", "400"],
            stdout=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        )
        try:
            assert proc.stdout is not None
            ports = dict(p.split("=") for p in proc.stdout.readline().split()[1:])
            config = resolve_demo_addresses(load_config(ensure_demo(Path(tmp))), int(ports["grpc"]), int(ports["tax"]))
            running = await start_gateway(config, rest_port=0, grpc_port=0)
            token = demo_token(Path(tmp), issuer_id="demo-agencies", subject="cedies", scope="exchange", ttl_s=900)
            md = (("authorization", f"Bearer {token}"), ("x-purpose", "student-aid"))
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc_port}") as channel:
                stub = population_pb2_grpc.PopulationRegistryStub(channel)  # type: ignore[no-untyped-call]  # no .pyi for *_pb2_grpc
                request = population_pb2.GetPersonRequest(national_id=nid)
                for _ in range(warmup):
                    await stub.GetPerson(request, metadata=md)
                walls = []
                cpu0 = time.process_time()
                for _ in range(calls):
                    t = time.perf_counter()
                    await stub.GetPerson(request, metadata=md)
                    walls.append(time.perf_counter() - t)
                cpu = time.process_time() - cpu0
            await running.stop(1.0)
        finally:
            proc.terminate()
            proc.wait(10)
    return {
        "cpu_us": cpu / calls * 1e6,
        "wall_mean_us": statistics.fmean(walls) * 1e6,
        "wall_p50_us": statistics.median(walls) * 1e6,
    }


async def _measure_pipeline(calls: int) -> dict[str, float]:
    """The pipeline alone (no sockets): front-door span, stages, client span, audit in memory."""
    from opentelemetry import propagate, trace

    from adapters.registries._trace import client_span, outgoing_metadata
    from adapters.stores.audit_memory import InMemoryAuditLog
    from adapters.stores.consent_memory import InMemoryConsentStore
    from consent import Mandate, Policy, Purpose
    from gateway.core.contracts import load_operations
    from gateway.core.pipeline import CallContext, ExchangePipeline, Registry
    from gateway.core.pseudonym import Pseudonymiser
    from gateway.demo.data import generate
    from observability.logs import RateLimitedSecurityLog
    from tests.support import TestIssuer, verifier_for

    pop = "registry.population.v1.PopulationRegistry"
    op = load_operations([pop])[f"{pop}/GetPerson"]
    nid = generate(20260101, 50).persons[0].national_id
    answer = op.response_cls(national_id=nid, given_names="Anne", family_name="Weber")

    class Registry_:
        async def call(
            self, method: str, request: object, *, timeout: float, metadata: Sequence[tuple[str, str]]
        ) -> object:
            with client_span(op.full_name, {"rpc.system": "grpc"}):
                outgoing_metadata(metadata)
                copy = op.response_cls()
                copy.CopyFrom(answer)
                return copy

        async def close(self) -> None:
            return None

    class Null:
        def on_exchange(self, *args: object) -> None:
            return None

    issuer = TestIssuer()
    policy = Policy.of(
        [Purpose("student-aid", {"fr": "", "de": "", "en": ""}, {})],
        [
            Mandate(
                "m1", "cedies", op.full_name, frozenset({"student-aid"}), "A6-1-e", fields=frozenset({"given_names"})
            )
        ],
    )
    pipeline = ExchangePipeline(
        verifier=verifier_for([issuer], {(issuer.id, "cedies"): "cedies"}),
        policy=lambda: policy,
        consents=InMemoryConsentStore(),
        registries={pop: Registry("rnpp", Registry_(), 1.0)},
        audit=InMemoryAuditLog(),
        pseudonymise=Pseudonymiser(b"k" * 32),
        security=RateLimitedSecurityLog(),
        observer=Null(),
        clock_us=lambda: time.time_ns() // 1000,
    )
    token = issuer.token("cedies", ttl=900)
    tracer = trace.get_tracer("bench")
    request = op.request_cls(national_id=nid)

    async def one() -> None:
        span = tracer.start_span(op.full_name, context=propagate.extract({}), kind=trace.SpanKind.SERVER)
        with trace.use_span(span, end_on_exit=True):
            await pipeline.exchange(op, request, CallContext("grpc", token, purpose="student-aid"))

    for _ in range(1000):
        await one()
    cpu0 = time.process_time()
    for _ in range(calls):
        await one()
    return {"cpu_us": (time.process_time() - cpu0) / calls * 1e6, "wall_mean_us": 0.0, "wall_p50_us": 0.0}


def _child(mode: str, calls: int, pipeline_only: bool) -> None:
    _tracing(mode)
    import uvloop

    measure = _measure_pipeline(calls * 10) if pipeline_only else _measure(calls, warmup=max(200, calls // 10))
    print(json.dumps({"mode": mode, **uvloop.run(measure)}))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_bench")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="runs per mode; the median is reported")
    parser.add_argument("--child", choices=list(MODES))
    parser.add_argument("--pipeline", action="store_true", help="the pipeline alone, no sockets (10x calls)")
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.calls, args.pipeline)
        return 0
    results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    for _ in range(args.rounds):
        for mode in MODES:  # interleaved, so drift hits every mode alike
            cmd = [sys.executable, "-m", "bench.tracing_bench", "--child", mode, "--calls", str(args.calls)]
            out = subprocess.run(
                cmd + (["--pipeline"] if args.pipeline else []), capture_output=True, text=True, check=True
            )
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = statistics.median(r["cpu_us"] for r in results["no-sdk"])
    print(f"{'mode':8} {'cpu µs/exchange':>16} {'vs no-sdk':>10} {'wall p50 µs':>12}")
    for mode, runs in results.items():
        cpu = statistics.median(r["cpu_us"] for r in runs)
        wall = statistics.median(r["wall_p50_us"] for r in runs)
        print(f"{mode:8} {cpu:16.0f} {cpu - base:+10.0f} {wall:12.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
