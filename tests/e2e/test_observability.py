"""Traces, metrics, logs and operational records over a real demo deployment.

The demo registries run in their own process and write their spans to a file
(``PASSERELLE_TRACES_FILE``); the gateway runs in the test process with an
in-memory span exporter. The same trace id on both sides shows that W3C trace
context crossed the process boundary over gRPC and over HTTP.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from prometheus_client.parser import text_string_to_metric_families

from consent import Consent
from gateway._pb.registry.population.v1 import population_pb2, population_pb2_grpc
from gateway._pb.registry.tax.v1 import tax_pb2, tax_pb2_grpc
from gateway.bootstrap import resolve_demo_addresses
from gateway.config import load_config
from gateway.core.clock import now_us
from gateway.demo.data import DemoData, generate
from gateway.demo.setup import demo_token, ensure_demo
from gateway.entrypoints.server import RunningGateway, start_gateway
from observability.logs import JsonFormatter, quiet_url_loggers
from tests.support import grpc_stub

pytestmark = pytest.mark.asyncio(loop_scope="module")

SEED = 20260101
PERSONS = 400
STAGES = {"authenticate", "authorise", "adapter call", "minimise", "audit"}
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _capture_spans() -> InMemorySpanExporter:
    """An in-memory exporter on the process's tracer provider (installed here if none is)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(sampler=ALWAYS_ON)
        trace.set_tracer_provider(provider)
    assert provider.sampler.get_description() == ALWAYS_ON.get_description(), "tests need every span sampled"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@dataclass
class Stack:
    data: DemoData
    data_dir: Path
    running: RunningGateway
    rest: httpx.AsyncClient
    channel: grpc.aio.Channel
    spans: InMemorySpanExporter
    registry_spans: Path
    logs: io.StringIO

    def headers(self, consumer: str = "cedies", purpose: str = "student-aid", **extra: str) -> dict[str, str]:
        token = demo_token(self.data_dir, issuer_id="demo-agencies", subject=consumer, scope="exchange")
        return {"authorization": f"Bearer {token}", "x-purpose": purpose, **extra}

    def ops_headers(self) -> dict[str, str]:
        return {
            "authorization": f"Bearer {demo_token(self.data_dir, issuer_id='demo-staff', subject='ops', scope='ops')}"
        }

    def remote_spans(self) -> list[dict[str, Any]]:
        text = self.registry_spans.read_text() if self.registry_spans.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line]


def _start_registries(span_file: Path) -> tuple[subprocess.Popen[str], int, int]:
    env = {**os.environ, "PASSERELLE_TRACES_FILE": str(span_file), "OTEL_TRACES_SAMPLER": "parentbased_always_on"}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.demo.registries", "--seed", str(SEED), "--persons", str(PERSONS)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        raise AssertionError(f"demo registries did not start: {line!r}")
    ports = dict(part.split("=") for part in line.split()[1:])
    return proc, int(ports["grpc"]), int(ports["tax"])


@pytest.fixture(scope="module")
def log_capture() -> Iterator[io.StringIO]:
    """Every log line of the gateway, as the JSON formatter writes it."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    quiet_url_loggers()  # as configure_logging does at start-up
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, log_capture: io.StringIO) -> AsyncIterator[Stack]:
    spans = _capture_spans()
    data_dir = tmp_path_factory.mktemp("observability")
    span_file = data_dir / "registry-spans.jsonl"
    proc, grpc_port, tax_port = _start_registries(span_file)
    try:
        config = resolve_demo_addresses(load_config(ensure_demo(data_dir)), grpc_port, tax_port)
        running = await start_gateway(config, rest_port=0, grpc_port=0)
        rest = httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.rest_port}", timeout=10)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc_port}")
        try:
            yield Stack(generate(SEED, PERSONS), data_dir, running, rest, channel, spans, span_file, log_capture)
        finally:
            await rest.aclose()
            await channel.close()
            await running.stop(1.0)
            spans.shutdown()   # later tests' spans are not kept
    finally:
        proc.terminate()
        proc.wait(10)


def taxpayer(data: DemoData) -> str:
    return next(p.national_id for p in data.persons if data.income(p.national_id, 2024) is not None)


def traceparent(span_id: str = "00f067aa0ba902b7") -> str:
    return f"00-{CALLER_TRACE}-{span_id}-01"


async def _consent(stack: Stack, nid: str) -> None:
    subject = stack.running.gateway.pseudonymise(nid)
    consent_id = f"obs-{len(stack.spans.get_finished_spans())}-{now_us()}"
    await stack.running.gateway.consents.add(Consent(consent_id, subject, "cedies", "student-aid", granted_us=now_us()))


async def _lookup(stack: Stack, door: str, service: str, nid: str, headers: dict[str, str]) -> None:
    if door == "rest":
        path = f"/v1/population/persons/{nid}" if service == "person" else f"/v1/tax/income-certificates/{nid}/2024"
        r = await stack.rest.get(path, headers=headers)
        assert r.status_code == 200, r.text
    elif service == "person":
        stub = grpc_stub(population_pb2_grpc.PopulationRegistryStub, stack.channel)
        await stub.GetPerson(population_pb2.GetPersonRequest(national_id=nid), metadata=tuple(headers.items()))
    else:
        stub_tax = grpc_stub(tax_pb2_grpc.TaxRegistryStub, stack.channel)
        await stub_tax.GetIncomeCertificate(
            tax_pb2.GetIncomeCertificateRequest(national_id=nid, fiscal_year=2024), metadata=tuple(headers.items())
        )


def _hex(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


# --- traces ------------------------------------------------------------------------------------

CASES = [("rest", "person"), ("grpc", "person"), ("rest", "tax"), ("grpc", "tax")]


@pytest.mark.parametrize(("door", "service"), CASES, ids=[f"{d}-door-{s}" for d, s in CASES])
async def test_one_lookup_is_one_trace_from_the_caller_to_the_registry(stack: Stack, door: str, service: str) -> None:
    nid = taxpayer(stack.data)
    if service == "tax":
        await _consent(stack, nid)
    caller_span = f"{len(stack.spans.get_finished_spans()) + 1:016x}"
    stack.spans.clear()
    await _lookup(stack, door, service, nid, stack.headers(traceparent=traceparent(caller_span)))

    spans = [s for s in stack.spans.get_finished_spans() if _hex(s)[0] == CALLER_TRACE]
    by_kind = {k: [s for s in spans if s.kind == k] for k in trace.SpanKind}
    assert len(by_kind[trace.SpanKind.SERVER]) == 1, [(s.name, s.resource.attributes) for s in spans]
    [server] = by_kind[trace.SpanKind.SERVER]
    assert server.parent is not None and f"{server.parent.span_id:016x}" == caller_span, (
        "the caller's span is the parent"
    )
    stages = {s.name for s in by_kind[trace.SpanKind.INTERNAL]}
    assert stages == STAGES | ({"consent"} if service == "tax" else set())
    assert all(
        s.parent is not None and s.parent.span_id == server.context.span_id
        for s in by_kind[trace.SpanKind.INTERNAL]
    ), "stages are children of the front-door span"
    [client] = by_kind[trace.SpanKind.CLIENT]
    adapter_call = next(s for s in spans if s.name == "adapter call")
    assert client.parent is not None and client.parent.span_id == adapter_call.context.span_id
    attributes = dict(server.attributes or {})
    assert attributes["passerelle.consumer"] == "cedies"
    assert attributes["passerelle.outcome"] == "ok"
    assert attributes["passerelle.purpose"] == "student-aid"
    if door == "rest":
        assert attributes["http.route"] in (
            "/v1/population/persons/{national_id}",
            "/v1/tax/income-certificates/{national_id}/{fiscal_year}",
        )
    else:
        assert attributes["rpc.system"] == "grpc"

    client_id = _hex(client)[1]
    remote = [s for s in stack.remote_spans() if s["trace_id"] == CALLER_TRACE and s["parent_span_id"] == client_id]
    assert [s["kind"] for s in remote] == ["SERVER"], "the registry's own server span, child of our client span"
    assert remote[0]["service"] == "passerelle-demo-registries"


async def test_a_lookup_without_traceparent_starts_a_trace_that_the_audit_record_keeps(stack: Stack) -> None:
    nid = taxpayer(stack.data)
    stack.spans.clear()
    await _lookup(stack, "rest", "person", nid, stack.headers(**{"x-request-id": "trace-me"}))
    [server] = [s for s in stack.spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    trace_id = _hex(server)[0]
    assert server.parent is None
    [logged] = [json.loads(line) for line in stack.logs.getvalue().splitlines() if '"trace-me"' in line]
    assert logged["trace_id"] == trace_id
    remote = [s for s in stack.remote_spans() if s["trace_id"] == trace_id]
    assert [s["kind"] for s in remote] == ["SERVER"]


# --- metrics -----------------------------------------------------------------------------------


async def _scrape(stack: Stack) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    r = await stack.rest.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def _by(samples: dict[tuple[tuple[str, str], ...], float], *keys: str) -> Counter[tuple[str, ...]]:
    out: Counter[tuple[str, ...]] = Counter()
    for labels, value in samples.items():
        d = dict(labels)
        out[tuple(d.get(k, "") for k in keys)] += int(value)
    return out


async def test_metrics_count_exactly_the_exchanges_made_per_outcome_and_reason(stack: Stack) -> None:
    nid = taxpayer(stack.data)
    unknown = next(p.national_id for p in generate(SEED + 1, 50).persons if stack.data.person(p.national_id) is None)
    before = await _scrape(stack)
    made: Counter[tuple[str, ...]] = Counter()
    for _ in range(3):
        await _lookup(stack, "rest", "person", nid, stack.headers())
        made[("cedies", "ok", "")] += 1
    await _lookup(stack, "grpc", "person", nid, stack.headers())
    made[("cedies", "ok", "")] += 1
    for _ in range(2):
        r = await stack.rest.get(f"/v1/population/persons/{nid}", headers=stack.headers("sandbox"))
        assert r.status_code == 403
        made[("sandbox", "refused", "NO_MANDATE")] += 1
    r = await stack.rest.get(f"/v1/population/persons/{nid}", headers=stack.headers(purpose="curiosity"))
    made[("cedies", "refused", "UNKNOWN_PURPOSE")] += 1
    r = await stack.rest.get(f"/v1/population/persons/{unknown}", headers=stack.headers())
    assert r.status_code == 404
    made[("cedies", "error", "SUBJECT_NOT_FOUND")] += 1
    r = await stack.rest.get(f"/v1/population/persons/{nid}")  # no token: a security event, not an exchange
    assert r.status_code == 401
    after = await _scrape(stack)

    delta = _by(after["passerelle_exchanges_total"], "consumer", "outcome", "reason")
    delta.subtract(_by(before.get("passerelle_exchanges_total", {}), "consumer", "outcome", "reason"))
    assert +delta == made
    grpc_calls = _by(after["rpc_server_call_duration_seconds_count"], "rpc_method")
    grpc_calls.subtract(_by(before.get("rpc_server_call_duration_seconds_count", {}), "rpc_method"))
    assert grpc_calls[("GetPerson",)] == 1
    http = _by(after["http_server_request_duration_seconds_count"], "http_route", "http_response_status_code")
    http.subtract(
        _by(before.get("http_server_request_duration_seconds_count", {}), "http_route", "http_response_status_code")
    )
    route = "/v1/population/persons/{national_id}"
    assert (http[(route, "200")], http[(route, "403")], http[(route, "404")], http[(route, "401")]) == (3, 3, 1, 1)
    registry = _by(after["passerelle_registry_calls_total"], "registry", "result")
    registry.subtract(_by(before.get("passerelle_registry_calls_total", {}), "registry", "result"))
    assert +registry == Counter({("rnpp", "ok"): 4, ("rnpp", "not_found"): 1})
    security = _by(after["passerelle_security_events_total"], "reason")
    security.subtract(_by(before.get("passerelle_security_events_total", {}), "reason"))
    assert +security == Counter({("TOKEN_MISSING",): 1})
    assert "passerelle_audit_queue_depth" in after
    assert after["passerelle_audit_commit_duration_seconds_count"]


# --- operational records -----------------------------------------------------------------------


async def test_ops_records_say_which_registry_is_slow_for_whom(stack: Stack) -> None:
    nid = taxpayer(stack.data)
    await _consent(stack, nid)
    await _lookup(stack, "rest", "tax", nid, stack.headers(**{"x-request-id": "ops-tax-1"}))
    r = await stack.rest.get(
        "/v1/ops/exchanges", params={"registry": "acd", "page_size": 1000}, headers=stack.ops_headers()
    )
    assert r.status_code == 200, r.text
    body = r.json()
    [record] = [e for e in body["exchanges"] if e["requestId"] == "ops-tax-1"]
    assert record["registry"] == "acd" and record["consumer"] == "cedies" and record["succeeded"] is True
    times = [int(record[k]) for k in ("requestInUs", "requestOutUs", "responseInUs", "responseOutUs")]
    assert times == sorted(times) and times[0] > 0
    assert int(record["registryResponseBytes"]) > 0 and int(record["requestBytes"]) > 0
    assert record["serviceVersion"] == "v1"
    summary = {(s["registry"], s["consumer"]): s for s in body["summary"]}
    assert int(summary[("acd", "cedies")]["exchanges"]) == len(body["exchanges"])
    assert int(summary[("acd", "cedies")]["registryP95Us"]) > 0


async def test_ops_api_needs_the_ops_scope(stack: Stack) -> None:
    r = await stack.rest.get("/v1/ops/exchanges", headers=stack.headers())
    assert r.status_code in (401, 403) and r.json()["reason"] == "WRONG_TOKEN_SCOPE"
    admin = demo_token(stack.data_dir, issuer_id="demo-staff", subject="admin", scope="admin")
    r = await stack.rest.get("/v1/ops/exchanges", headers={"authorization": f"Bearer {admin}"})
    assert r.status_code == 403 and r.json()["reason"] == "WRONG_TOKEN_SCOPE"


async def test_a_portal_reports_documents_it_still_asked_citizens_for(stack: Stack) -> None:
    r = await stack.rest.post(
        "/v1/ops/manual-submissions",
        headers=stack.headers(),
        json={"procedure": "student-aid-2026", "documents": 2, "caseId": "case-7"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"consumer": "cedies", "documents": 2}
    r = await stack.rest.post(
        "/v1/ops/manual-submissions", headers=stack.headers(), json={"procedure": "x", "documents": 0}
    )
    assert r.status_code == 400 and r.json()["field"] == "documents"


async def test_readiness_shows_each_registry(stack: Stack) -> None:
    r = await stack.rest.get("/readyz")
    assert r.status_code == 200
    registries = r.json()["registries"]
    assert {k: v["probe"] for k, v in registries.items()} == {"rnpp": "serving", "rcs": "serving", "acd": "serving"}


# --- no personal data in telemetry --------------------------------------------------------------

NID = re.compile(r"(?<!\d)\d{13}(?!\d)")


async def test_no_national_id_reaches_spans_logs_metrics_or_ops_records(stack: Stack) -> None:
    nid = taxpayer(stack.data)
    await _consent(stack, nid)
    for door in ("rest", "grpc"):
        for service in ("person", "tax"):
            await _lookup(stack, door, service, nid, stack.headers(**{"x-case-id": "case-1"}))
    # A caller that puts a national id where labels come from: purpose, request id, case id.
    await stack.rest.get(
        f"/v1/population/persons/{nid}", headers=stack.headers(purpose=nid, **{"x-request-id": nid, "x-case-id": nid})
    )
    await stack.rest.get(f"/v1/population/persons/{nid[:-1]}x", headers=stack.headers())
    await stack.rest.get(f"/v1/nowhere/{nid}", headers=stack.headers())
    ids = {p.national_id for p in stack.data.persons}
    texts = {
        "spans": json.dumps([json.loads(s.to_json()) for s in stack.spans.get_finished_spans()]),
        "registry spans": json.dumps([{k: v for k, v in s.items()} for s in stack.remote_spans()]),
        "logs": stack.logs.getvalue(),
        "metrics": (await stack.rest.get("/metrics")).text,
        "ops": (
            await stack.rest.get("/v1/ops/exchanges", params={"page_size": 1000}, headers=stack.ops_headers())
        ).text,
    }
    assert all(texts.values())
    leaks = {where: sorted(set(NID.findall(text)) & ids) for where, text in texts.items()}
    assert leaks == {where: [] for where in texts}
