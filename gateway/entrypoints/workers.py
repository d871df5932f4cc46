"""``gateway serve --workers N``: N gateway processes sharing the two ports (SO_REUSEPORT).

Each worker is a whole gateway (gRPC and REST on one uvloop loop). The kernel
spreads new connections over the workers' listening sockets; a supervisor (this
process) starts them, restarts one that dies, and on SIGTERM/SIGINT passes the
signal on and waits for them to drain (``gateway.shutdown_grace_s``).

What the workers share is what lives in the stores: the audit log (one hash chain:
each batch is chained inside a write transaction that reads the head, in SQLite
and PostgreSQL alike) and consents (the SQLite file). Token caches and
revocation sets are per process (docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from types import FrameType

from gateway.config import Config

__all__ = ["reserve_port", "run_gateway", "serve_workers"]

_log = logging.getLogger("passerelle.lifecycle.supervisor")   # written whatever the log level
#: A worker dying more often than this many times in a minute stops the whole service.
MAX_RESTARTS_PER_MINUTE = 10
#: A worker's exit code when it could not start (configuration, ports): restarting it would not help.
CANNOT_START = 2


@contextlib.contextmanager
def reserve_port(host: str, port: int) -> Iterator[int]:
    """Hold ``port`` (or a free one, for 0) in the reuse-port group without listening on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def _worker(config: Config) -> None:
    from gateway.config_files import StartupError
    from observability.logs import configure_logging

    configure_logging(os.environ.get("PASSERELLE_LOG_LEVEL", "INFO"))   # checked by `serve` already
    try:
        _worker_loop(config, announce=False)
    except StartupError as exc:   # one line, and the supervisor stops instead of restarting it
        _log.error(str(exc), extra={"fields": {"pid": os.getpid()}})
        raise SystemExit(CANNOT_START) from None


def _worker_loop(config: Config, *, announce: bool = True) -> None:
    from gateway.entrypoints.server import serve_forever

    try:
        import uvloop

        uvloop.run(serve_forever(config, announce=announce))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        import asyncio

        asyncio.run(serve_forever(config, announce=announce))


class _Supervisor:
    def __init__(self, config: Config, workers: int) -> None:
        self._config = config
        self._count = workers
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list[BaseProcess] = []
        self._restarts: list[float] = []
        self._stopping = False

    def _spawn(self) -> BaseProcess:
        proc = self._ctx.Process(target=_worker, args=(self._config,), name="passerelle-worker", daemon=False)
        proc.start()
        return proc

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self._procs = [self._spawn() for _ in range(self._count)]
        _log.info(f"Passerelle supervisor: {self._count} workers",
                  extra={"fields": {"pids": [p.pid for p in self._procs]}})  # fmt: skip
        while not self._stopping:
            time.sleep(0.1)
            if any(p.exitcode == CANNOT_START for p in self._procs):
                self._stopping = True
                return self._stop(CANNOT_START)
            if not self._replace_dead():
                self._stopping = True
                return self._stop(1)
        return self._stop(0)

    def _replace_dead(self) -> bool:
        now = time.monotonic()
        for i, proc in enumerate(self._procs):
            if proc.is_alive() or self._stopping:
                continue
            self._restarts = [t for t in self._restarts if now - t < 60] + [now]
            if len(self._restarts) > MAX_RESTARTS_PER_MINUTE:
                _log.error("workers keep dying; stopping", extra={"fields": {"exitcode": proc.exitcode}})
                return False
            self._procs[i] = self._spawn()
            _log.warning(f"Passerelle supervisor: worker {proc.pid} exited ({proc.exitcode}); "
                         f"started {self._procs[i].pid}", extra={"fields": {"exitcode": proc.exitcode}})  # fmt: skip
        return True

    def _stop(self, code: int) -> int:
        for proc in self._procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()  # SIGTERM: the worker drains
        started = time.monotonic()
        deadline = started + self._config.gateway.shutdown_grace_s + 5.0
        killed = []
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
                killed.append(proc.pid)
        exits = {str(p.pid): p.exitcode for p in self._procs}
        clean = not killed and all(c == 0 for c in exits.values())
        _log.info(f"Passerelle supervisor stopped: {len(self._procs)} workers, "
                  + ("all exited cleanly after draining (see each worker's 'stopped' line)" if clean
                     else f"{len(killed)} killed after the grace period, exit codes {exits}"),
                  extra={"fields": {"worker_exit_codes": exits, "killed": killed, "drained": clean,
                                    "took_ms": round((time.monotonic() - started) * 1000, 1)}})  # fmt: skip
        return code


def serve_workers(config: Config, workers: int) -> int:
    """Run ``workers`` gateway processes on the configured ports until SIGTERM; return an exit code."""
    gw = config.gateway
    with reserve_port(gw.rest_host, gw.rest_port) as rest, reserve_port(gw.grpc_host, gw.grpc_port) as grpc_port:
        config = config.model_copy(
            update={"gateway": gw.model_copy(update={"rest_port": rest, "grpc_port": grpc_port})}
        )
        _log.info(f"Passerelle: REST http://{gw.rest_host}:{rest}  gRPC {gw.grpc_host}:{grpc_port}  "
                  f"({workers} workers)", extra={"fields": {"rest_port": rest, "grpc_port": grpc_port}})  # fmt: skip
        if gw.demo:
            from gateway.entrypoints.server import announce_demo

            announce_demo(config, rest)
        return _Supervisor(config, workers).run()


def run_gateway(config: Config, workers: int = 1) -> None:
    """One gateway in this process, or a supervisor of ``workers`` processes."""
    if workers > 1:
        code = serve_workers(config, workers)
        if code:
            raise SystemExit(code)
        return
    _worker_loop(config)
