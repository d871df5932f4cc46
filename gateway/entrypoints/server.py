"""Running the gateway: gRPC and REST front doors on ONE asyncio loop (uvloop), one process.

Why one loop: both front doors call the same pipeline coroutine, share the
adapters' connection pools and the audit writer, and avoid a thread hop per
exchange (docs/decisions/server-mode.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import uvicorn
from fastapi import FastAPI

from gateway.application.runtime import Gateway
from gateway.bootstrap import build_gateway
from gateway.config import Config
from gateway.config_files import StartupError
from gateway.entrypoints._citizen_cookie import citizen_cookie
from gateway.entrypoints._collector import tune_after_start
from gateway.entrypoints._grpc_security import grpc_tls
from gateway.entrypoints.binding import install_grpc, install_rest
from gateway.entrypoints.grpc_server import create_grpc_server
from gateway.entrypoints.in_flight import CountingAsgi, CountingInterceptor, InFlight
from gateway.entrypoints.rest import create_rest_app
from observability.tracing import configure_tracing

__all__ = ["RunningGateway", "rest_app", "rest_server", "serve_forever", "start_gateway"]

#: Start, ready, first call, stop: written whatever PASSERELLE_LOG_LEVEL says (tools wait for "Passerelle ready").
LIFECYCLE = "passerelle.lifecycle"
_log = logging.getLogger(LIFECYCLE)


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
    rest_calls: InFlight = field(default_factory=InFlight)
    grpc_calls: InFlight = field(default_factory=InFlight)

    async def stop(self, grace: float = 5.0) -> None:
        """Drain: stop accepting, let in-flight exchanges finish, flush the audit log; log one line saying so."""
        started = time.monotonic()
        rest_at_signal, grpc_at_signal = self.rest_calls.snapshot(), self.grpc_calls.snapshot()
        connections = len(self._uvicorn.server_state.connections)
        await self.health.enter_graceful_shutdown()
        self._uvicorn.should_exit = True

        async def rest_drained() -> bool:
            try:
                await asyncio.wait_for(asyncio.shield(self._rest_task), grace)
            except TimeoutError:
                return False
            return True

        # Both doors drain at once, so the whole stop takes at most ``grace`` plus the audit flush.
        _, drained = await asyncio.gather(self.grpc_server.stop(grace), rest_drained())
        await self.gateway.close()
        rest, grpc_ = self.rest_calls.report(rest_at_signal, "rest"), self.grpc_calls.report(grpc_at_signal, "grpc")
        drained = drained and rest["rest_unfinished"] == 0 and grpc_["grpc_unfinished"] == 0
        _log.info(f"stopped: {'drained' if drained else 'NOT drained within the grace period'}; in flight at "
                  f"SIGTERM: REST {rest['rest_in_flight_at_signal']}, gRPC {grpc_['grpc_in_flight_at_signal']}; "
                  f"completed since: REST {rest['rest_completed']}, gRPC {grpc_['grpc_completed']}; unfinished: "
                  f"REST {rest['rest_unfinished']}, gRPC {grpc_['grpc_unfinished']}; exchange log flushed",
                  extra={"fields": {
            **rest, **grpc_, "rest_connections_at_signal": connections, "drained": drained, "pid": os.getpid(),
            "grace_s": grace, "took_ms": round((time.monotonic() - started) * 1000, 1), "audit": "flushed",
        }})  # fmt: skip


def rest_server(app: Any) -> _EmbeddedUvicorn:
    """Uvicorn as the REST door runs it, on the caller's loop: httptools, no access log, no server header."""
    # log_config=None: uvicorn's own messages go through our JSON handler (observability.logs).
    return _EmbeddedUvicorn(
        uvicorn.Config(app, log_level="warning", log_config=None, access_log=False, lifespan="off",
                       http="httptools", loop="none", h11_max_incomplete_event_size=16 * 1024, server_header=False)
    )


def rest_app(gateway: Gateway, *, lean_routes: bool = True) -> FastAPI:
    """The REST door's application for ``gateway`` (``lean_routes=False``: only for tests comparing both ways)."""
    return create_rest_app(
        gateway.pipeline, gateway.operations, ready=gateway.ready, title=gateway.config.gateway.name,
        max_body_bytes=gateway.config.gateway.max_request_bytes, body_limits=gateway.rest_body_limits,
        installers=[install_rest(gateway.pipeline, gateway.bindings, citizen_cookie(gateway)),
                    *gateway.rest_installers],
        lean_routes=lean_routes,
    )


async def start_gateway(
    config: Config, *, rest_port: int | None = None, grpc_port: int | None = None, tls_port: int | None = None
) -> RunningGateway:
    gw_conf = config.gateway
    gateway = await build_gateway(config)
    rest_calls, grpc_calls = InFlight(), InFlight()
    ports: dict[str, int] = {}
    server, bound, health = await create_grpc_server(
        gateway.pipeline, gateway.operations, host=gw_conf.grpc_host,
        port=gw_conf.grpc_port if grpc_port is None else grpc_port, max_request_bytes=gw_conf.max_request_bytes,
        method_limits=gateway.grpc_message_limits,
        extra=[install_grpc(gateway.pipeline, gateway.bindings), *gateway.grpc_services],
        interceptors=[CountingInterceptor(grpc_calls), *gateway.grpc_interceptors],   # outermost: every call
        tls=grpc_tls(config, tls_port), bound_ports=ports,
    )
    app = rest_app(gateway)
    sock = bind_socket(gw_conf.rest_host, gw_conf.rest_port if rest_port is None else rest_port)
    uv = rest_server(CountingAsgi(app, rest_calls))
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    while not uv.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    return RunningGateway(gateway, server, bound, sock.getsockname()[1], health, uv, task, ports.get("grpc_tls", 0),
                          rest_calls, grpc_calls)


async def serve_forever(config: Config, *, grace: float | None = None, announce: bool = True) -> None:
    """Serve until SIGTERM/SIGINT, then drain within ``grace`` (default: ``gateway.shutdown_grace_s``).

    ``announce``: under ``--demo``, show the first call (the supervisor does it once for its workers).
    """
    tracing = configure_tracing(os.environ, service_name="passerelle-gateway")   # once per process
    logging.getLogger(LIFECYCLE).setLevel(logging.INFO)
    try:
        running = await start_gateway(config)
    except Exception as exc:   # one line for the person starting it (cli._run_or_explain), not a traceback
        raise StartupError(startup_problem(config, exc)) from exc
    frozen = tune_after_start()   # before the first exchange: the collector skips start-up objects
    g = config.gateway
    _log.info(
        f"Passerelle ready: REST http://{g.rest_host}:{running.rest_port}  gRPC {g.grpc_host}:{running.grpc_port}"
        + (f"  gRPC+TLS {g.grpc_host}:{running.grpc_tls_port}" if running.grpc_tls_port else ""),
        extra={"fields": {"rest_port": running.rest_port, "grpc_port": running.grpc_port, "pid": os.getpid(),
                           "gc_frozen_objects": frozen}},
    )
    if announce and g.demo:
        announce_demo(config, running.rest_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.stop(config.gateway.shutdown_grace_s if grace is None else grace)
    if tracing is not None:
        tracing.shutdown()   # flush the last spans


def startup_problem(config: Config, exc: BaseException) -> str:
    """What stopped the gateway from starting, in one line."""
    g = config.gateway
    where = f"REST {g.rest_host}:{g.rest_port} or gRPC {g.grpc_host}:{g.grpc_port}"
    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, PermissionError):
        return f"cannot listen on {where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    if (isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE) or "Failed to bind" in text:
        return (f"cannot listen on {where}: already in use. "
                "Free the port or choose others with --rest-port / --grpc-port.")  # fmt: skip
    return f"cannot start: {type(exc).__name__}: {text}"


def _own_command() -> str:
    """How to call this very ``gateway`` again: ``gateway`` when that is the one on PATH, else its path."""
    import shutil
    from pathlib import Path

    argv0 = Path(sys.argv[0])
    if argv0.name != "gateway":
        return f"{sys.executable} -m gateway.entrypoints.cli"
    on_path = shutil.which("gateway")
    return "gateway" if on_path and Path(on_path).resolve() == argv0.resolve() else str(argv0)


def announce_demo(config: Config, rest_port: int) -> None:
    """The first call to try: plain text for a person at a terminal, a JSON log line otherwise."""
    from pathlib import Path

    data_dir = Path(os.path.relpath(config.base_dir))
    dd = "" if data_dir == Path(".gateway-demo") else f" --data-dir {data_dir}"
    base = f"http://127.0.0.1:{rest_port}"
    token = f"{_own_command()} token --consumer cedies{dd}"
    call = (f"curl -s {base}/v1/population/persons/1991062434054 "
            '-H "Authorization: Bearer $TOKEN" -H "x-purpose: student-aid"')
    if not sys.stderr.isatty():
        _log.info("demo: first call", extra={"fields": {"token_command": token, "call": call,
                                                         "citizen_page": f"{base}/me/", "api_docs": f"{base}/docs"}})
        return
    print(f"first call (another terminal, same folder):\n  TOKEN=$({token})\n  {call}\n"
          f"citizen page: {base}/me/   API documentation: {base}/docs", file=sys.stderr, flush=True)
