"""Fuzzing the REST front door from its own OpenAPI document (schemathesis), and raw bytes on gRPC.

The gateway runs on a free port in a thread with its own event loop, because
schemathesis calls it synchronously. Every documented operation gets a bounded
number of generated requests (derandomised, so CI is repeatable): none may get
a 5xx, and every answer must fit the document (status, content type, schema).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks as st_checks
from schemathesis.core.result import Ok
from schemathesis.specs.openapi import checks as oa_checks

from gateway.bootstrap import resolve_demo_addresses
from gateway.config import load_config
from gateway.demo.data import generate
from gateway.demo.registries import start_grpc_registry, start_tax_registry
from gateway.demo.setup import demo_token, ensure_demo
from gateway.entrypoints.server import start_gateway

EXAMPLES_PER_OPERATION = 12
CHECKS = [
    st_checks.not_a_server_error,
    oa_checks.status_code_conformance,
    oa_checks.content_type_conformance,
    oa_checks.response_schema_conformance,
]


class ThreadedStack:
    """Demo registries and gateway on one event loop in a background thread."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop = asyncio.Event()
        self.error: BaseException | None = None
        self.rest_port = self.grpc_port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to the test thread
            self.error = exc
            self.ready.set()
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self.stop = asyncio.Event()
        data = generate(20260101, persons=100)
        reg, grpc_port = await start_grpc_registry(data)
        tax, tax_port = await start_tax_registry(data)
        config = resolve_demo_addresses(load_config(ensure_demo(self.data_dir)), grpc_port, tax_port)
        running = await start_gateway(config, rest_port=0, grpc_port=0)
        self.rest_port, self.grpc_port = running.rest_port, running.grpc_port
        self.ready.set()
        try:
            await self.stop.wait()
        finally:
            await running.stop(1.0)
            await reg.stop(0)
            await tax.stop()

    def __enter__(self) -> ThreadedStack:
        self.thread.start()
        self.ready.wait(60)
        if self.error:
            raise self.error
        return self

    def __exit__(self, *exc: Any) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


@pytest.fixture(scope="module")
def threaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedStack]:
    with ThreadedStack(tmp_path_factory.mktemp("fuzz")) as stack:
        yield stack


def operations(base_url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    found: list[Any] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # an operation the schema could not describe
        found.append(result.ok())
    return found


def test_rest_door_survives_fuzzing_and_keeps_to_its_openapi_document(threaded: ThreadedStack) -> None:
    base = f"http://127.0.0.1:{threaded.rest_port}"
    token = demo_token(threaded.data_dir, issuer_id="demo-agencies", subject="cedies", scope="exchange")
    ops = operations(base)
    assert len(ops) >= 4
    failures: list[str] = []
    for op in ops:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy())
        def fuzz(case: Any) -> None:
            case.call_and_validate(base_url=base, headers={"authorization": f"Bearer {token}"}, checks=CHECKS)

        try:
            fuzz()
        except Exception as exc:  # collect every operation's failure, not just the first
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:600]}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize(
    "method",
    [
        "/registry.population.v1.PopulationRegistry/GetPerson",
        "/passerelle.gateway.v1.ServiceCatalogue/ListServices",
        "/passerelle.gateway.v1.Revocations/Revoke",
    ],
)
def test_malformed_protobuf_bytes_are_invalid_argument(threaded: ThreadedStack, method: str) -> None:
    """Exchanges and the gateway's own services alike: garbage bytes are the caller's fault, not ours."""
    token = demo_token(threaded.data_dir, issuer_id="demo-agencies", subject="cedies", scope="exchange")
    if "Revocations" in method:
        token = demo_token(threaded.data_dir, issuer_id="demo-staff", subject="admin", scope="admin")
    with grpc.insecure_channel(f"127.0.0.1:{threaded.grpc_port}") as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        with pytest.raises(grpc.RpcError) as exc:
            call(
                b"\xff\xff\xff\xff\x0f",
                metadata=(("authorization", f"Bearer {token}"), ("x-purpose", "student-aid")),
                timeout=5,
            )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
