"""A whole demo deployment on free 127.0.0.1 ports: demo registries + gateway, one per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest_asyncio

from gateway.bootstrap import resolve_demo_addresses
from gateway.config import load_config
from gateway.demo.data import DemoData, generate
from gateway.demo.registries import Faults, start_grpc_registry, start_tax_registry
from gateway.demo.setup import demo_token, ensure_demo
from gateway.entrypoints.server import RunningGateway, start_gateway

SEED = 20260101


@dataclass
class DemoStack:
    data: DemoData
    data_dir: Path
    running: RunningGateway
    rest: httpx.AsyncClient
    channel: grpc.aio.Channel
    faults: Faults
    tax_faults: Faults

    def token(self, consumer: str = "cedies") -> str:
        return demo_token(self.data_dir, issuer_id="demo-agencies", subject=consumer, scope="exchange")

    def headers(self, consumer: str = "cedies", purpose: str = "student-aid", **extra: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(consumer)}", "x-purpose": purpose, **extra}

    def metadata(
        self, consumer: str = "cedies", purpose: str = "student-aid", **extra: str
    ) -> tuple[tuple[str, str], ...]:
        return tuple(self.headers(consumer, purpose, **extra).items())


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def demo(tmp_path_factory: object) -> AsyncIterator[DemoStack]:
    data = generate(SEED, persons=400)
    faults, tax_faults = Faults(), Faults()
    reg_server, grpc_port = await start_grpc_registry(data, faults=faults)
    tax, tax_port = await start_tax_registry(data, faults=tax_faults)
    data_dir = tmp_path_factory.mktemp("gateway")  # type: ignore[attr-defined]
    config = resolve_demo_addresses(load_config(ensure_demo(data_dir)), grpc_port, tax_port)
    running = await start_gateway(config, rest_port=0, grpc_port=0)
    rest = httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.rest_port}", timeout=10)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc_port}")
    try:
        yield DemoStack(data, data_dir, running, rest, channel, faults, tax_faults)
    finally:
        await rest.aclose()
        await channel.close()
        await running.stop(1.0)
        await reg_server.stop(0)
        await tax.stop()
