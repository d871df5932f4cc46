"""Running the gateway: gRPC and REST front doors on ONE asyncio loop (uvloop), one process.

Why one loop: both front doors call the same pipeline coroutine, share the
adapters' connection pools and the audit writer, and avoid a thread hop per
exchange (docs/decisions/server-mode.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import uvicorn

from gateway.bootstrap import Gateway, build_gateway
from gateway.config import Config
from gateway.entrypoints._grpc_security import grpc_tls
from gateway.entrypoints.binding import install_grpc, install_rest
from gateway.entrypoints.grpc_server import create_grpc_server
from gateway.entrypoints.rest import create_rest_app
from observability.tracing import configure_tracing

__all__ = ["RunningGateway", "serve_forever", "start_gateway"]


class _EmbeddedUvicorn(uvicorn.Server):
    """Uvicorn inside our loop: signals are ours, not uvicorn's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


@dataclass
class RunningGateway:
    gateway: Gateway
    grpc_server: grpc.aio.Server
    grpc_port: int
    rest_port: int
    health: Any
    _uvicorn: _EmbeddedUvicorn
    _rest_task: asyncio.Task[None]
    grpc_tls_port: int = 0     # gRPC over TLS ([gateway.tls]); 0 when not configured

    async def stop(self, grace: float = 5.0) -> None:
        """Drain: stop accepting, let in-flight exchanges finish, flush the audit log."""
        await self.health.enter_graceful_shutdown()
        self._uvicorn.should_exit = True

        async def rest_drained() -> None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._rest_task), grace)

        # Both doors drain at once, so the whole stop takes at most ``grace`` plus the audit flush.
        await asyncio.gather(self.grpc_server.stop(grace), rest_drained())
        await self.gateway.close()


async def start_gateway(
    config: Config, *, rest_port: int | None = None, grpc_port: int | None = None, tls_port: int | None = None
) -> RunningGateway:
    gw_conf = config.gateway
    gateway = await build_gateway(config)
    server, bound, health = await create_grpc_server(
        gateway.pipeline, gateway.operations, host=gw_conf.grpc_host,
        port=gw_conf.grpc_port if grpc_port is None else grpc_port, max_request_bytes=gw_conf.max_request_bytes,
        extra=[install_grpc(gateway.pipeline, gateway.bindings)], interceptors=gateway.grpc_interceptors,
        tls=grpc_tls(config, tls_port), bound_ports=(ports := {}),
    )
    app = create_rest_app(
        gateway.pipeline, gateway.operations, ready=gateway.ready, title=gw_conf.name,
        max_body_bytes=gw_conf.max_request_bytes,
        installers=[install_rest(gateway.pipeline, gateway.bindings), *gateway.rest_installers],
    )
    sock = bind_socket(gw_conf.rest_host, gw_conf.rest_port if rest_port is None else rest_port)
    uv = _EmbeddedUvicorn(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", http="httptools",
                       loop="none", h11_max_incomplete_event_size=16 * 1024, server_header=False)
    )
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    while not uv.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    return RunningGateway(gateway, server, bound, sock.getsockname()[1], health, uv, task, ports.get("grpc_tls", 0))


async def serve_forever(config: Config, *, grace: float | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain within ``grace`` (default: ``gateway.shutdown_grace_s``)."""
    tracing = configure_tracing(os.environ, service_name="passerelle-gateway")   # once per process
    running = await start_gateway(config)
    print(
        f"Passerelle ready: REST http://{config.gateway.rest_host}:{running.rest_port}  "
        f"gRPC {config.gateway.grpc_host}:{running.grpc_port}"
        + (f"  gRPC+TLS {config.gateway.grpc_host}:{running.grpc_tls_port}" if running.grpc_tls_port else ""),
        file=sys.stderr, flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.stop(config.gateway.shutdown_grace_s if grace is None else grace)
    if tracing is not None:
        tracing.shutdown()   # flush the last spans
