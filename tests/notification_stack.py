"""A demo deployment for change notifications: the demo registries (with a change log on disk), a
gateway in demo mode with quick retries, and webhook receivers on 127.0.0.1 that a test steers
(answer 2xx, refuse, answer garbage, hang)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from aiohttp import web

from gateway.bootstrap import resolve_demo_addresses
from gateway.config import Config, load_config
from gateway.demo.changes import ChangeLog
from gateway.demo.data import DemoData, generate
from gateway.demo.registries import start_grpc_registry, start_tax_registry
from gateway.demo.setup import demo_token, ensure_demo
from gateway.entrypoints.server import RunningGateway, start_gateway

__all__ = ["Receiver", "Stack", "notification_stack", "start_receiver"]

SEED = 20260101


@dataclass
class Receiver:
    """A webhook endpoint: records each request (headers, body); ``mode`` is ok | refuse | garbage | hang."""

    url: str = ""
    mode: str = "ok"
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(({k.lower(): v for k, v in request.headers.items()}, body))
        self.arrived.set()
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "refuse":
            return web.Response(status=503, text="busy")
        if self.mode == "garbage":
            resp = web.StreamResponse(status=200)
            await resp.prepare(request)
            await resp.write(b"\x00\xff garbage")
            return resp
        return web.Response(status=204)

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < n:
                self.arrived.clear()
                await self.arrived.wait()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def start_receiver(mode: str = "ok") -> Receiver:
    receiver = Receiver(mode=mode)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url, receiver.runner = f"http://127.0.0.1:{port}/hook", runner
    return receiver


@dataclass
class Stack:
    data: DemoData
    data_dir: Path
    changes: ChangeLog
    running: RunningGateway
    rest: httpx.AsyncClient
    channel: grpc.aio.Channel

    def token(self, consumer: str = "cedies") -> str:
        return demo_token(self.data_dir, issuer_id="demo-agencies", subject=consumer, scope="exchange")

    def headers(self, consumer: str = "cedies") -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(consumer)}"}

    def staff(self, scope: str) -> dict[str, str]:
        tok = demo_token(self.data_dir, issuer_id="demo-staff", subject=scope, scope=scope)
        return {"authorization": f"Bearer {tok}"}

    def citizen(self, national_id: str) -> dict[str, str]:
        tok = demo_token(self.data_dir, issuer_id="demo-citizens", subject=national_id, scope="citizen")
        return {"authorization": f"Bearer {tok}"}


def fast(config: Config) -> Config:
    """Demo mode (http and loopback webhooks), retries in tenths of seconds, a small poll."""
    n = config.notifications.model_copy(update={"retry_base_s": 0.1, "retry_max_s": 0.4, "max_attempts": 3,
                                                "poll_s": 0.05, "webhook_timeout_s": 1.0, "lease_s": 2.0,
                                                "per_subscription": 2, "max_follows": 5})  # fmt: skip
    return config.model_copy(update={"notifications": n,
                                     "gateway": config.gateway.model_copy(update={"demo": True})})


@contextlib.asynccontextmanager
async def notification_stack(data_dir: Path, persons: int = 300) -> AsyncIterator[Stack]:
    data = generate(SEED, persons=persons)
    changes = ChangeLog(data_dir / "changes.db")
    reg_server, grpc_port = await start_grpc_registry(data, changes=changes)
    tax, tax_port = await start_tax_registry(data)
    config = fast(resolve_demo_addresses(load_config(ensure_demo(data_dir)), grpc_port, tax_port))
    running = await start_gateway(config, rest_port=0, grpc_port=0)
    rest = httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.rest_port}", timeout=10)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc_port}")
    try:
        yield Stack(data, data_dir, changes, running, rest, channel)
    finally:
        await rest.aclose()
        await channel.close()
        await running.stop(1.0)
        await reg_server.stop(0)
        await tax.stop()
        changes.close()
