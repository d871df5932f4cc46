"""The processes under test: demo registries, bare proxy, nginx, gateway (1..N workers), each its own process;
and the gateway as ``gateway serve --demo`` runs it (``bench.demo_gateway``).

CPU and memory are read from /proc: ``utime + stime`` of a process (and of its
worker children) and ``VmHWM`` (peak resident set).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.nginx import NginxPorts, nginx_command, nginx_problem
from consent import Consent
from gateway.core.pseudonym import Pseudonymiser
from gateway.demo.setup import demo_token, ensure_demo

if TYPE_CHECKING:
    from bench.demo_gateway import DemoGateway

__all__ = ["Proc", "Stack", "free_port", "start_nginx", "start_stack"]

_TICK = os.sysconf("SC_CLK_TCK")
SEED = 20260101
INCOME_YEAR = 2024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cpu_s(pids: list[int]) -> float:
    """``utime + stime`` of ``pids``, in seconds (a process gone meanwhile counts 0)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return total


def _kb(pids: list[int], key: str) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            m = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
            total += int(m.group(1)) if m else 0
    return total


@dataclass
class Proc:
    """A process the bench started; ``pids`` are what its CPU and memory figures add up.

    ``workers``: the mark, in its children's command lines, of the worker processes that do the work
    (the gateway's ``spawn_main``; nginx's ``worker process``); ``with_parent``: count the process
    itself as well (nginx's master) rather than only its workers when it has some.
    """

    name: str
    popen: subprocess.Popen[str]
    log: Path
    workers: str = "spawn_main"
    with_parent: bool = False

    @property
    def pids(self) -> list[int]:
        """This process, and its children when it supervises workers."""
        pid = self.popen.pid
        workers = [c for c in _children(pid) if self.workers in _cmdline(c)]
        if self.with_parent:
            return [pid, *workers]
        return workers or [pid]

    def cpu_s(self) -> float:
        return _cpu_s(self.pids)

    def rss_kb(self, key: str = "VmHWM") -> int:
        return _kb(self.pids, key)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _spawn(name: str, cmd: list[str], workdir: Path, ready: str, timeout: float = 60,
           env: dict[str, str] | None = None) -> tuple[Proc, str]:  # fmt: skip
    """Start ``cmd``; wait for a line containing ``ready`` on stdout or stderr; return it.

    ``env``: the whole environment (default: this one, with the gateway's log level at WARNING).
    """
    log = workdir / f"{name}.log"
    out = log.open("w")
    env = {**os.environ, "PASSERELLE_LOG_LEVEL": "WARNING"} if env is None else env
    popen = subprocess.Popen(cmd, stdout=out, stderr=out, text=True, env=env)
    proc = Proc(name, popen, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        for line in text.splitlines():
            if ready in line:   # the gateway's lines are JSON; the registries' and proxy's plain
                return proc, line
        if popen.poll() is not None:
            raise RuntimeError(f"{name} exited: {text[-2000:]}")
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"{name} not ready after {timeout} s; see {log}")


@dataclass
class Stack:
    workdir: Path
    data_dir: Path
    registries: Proc
    grpc_registry: int
    tax_registry: int
    proxy: Proc | None = None
    proxy_grpc: int = 0
    proxy_rest: int = 0
    gateway: Proc | None = None
    gateway_grpc: int = 0
    gateway_rest: int = 0
    nginx: Proc | None = None
    nginx_grpc: int = 0
    nginx_rest: int = 0
    nginx_skipped: str = ""   # why there is no nginx hop in this run ('' when there is one)
    demo: DemoGateway | None = None
    nid: str = ""
    procs: list[Proc] = field(default_factory=list)
    _folders: list[Path] = field(default_factory=list)

    def token(self) -> str:
        return demo_token(self.data_dir, issuer_id="demo-agencies", subject="cedies", scope="exchange")

    def start_proxy(self) -> None:
        self.proxy, line = _spawn("proxy", [sys.executable, "-m", "bench.proxy",
                                            "--grpc-target", f"127.0.0.1:{self.grpc_registry}",
                                            "--rest-base", f"http://127.0.0.1:{self.tax_registry}"],
                                  self.workdir, "READY")  # fmt: skip
        ports = dict(p.split("=") for p in line.split()[1:])
        self.proxy_grpc, self.proxy_rest = int(ports["grpc"]), int(ports["rest"])

    def start_nginx(self) -> None:
        """nginx in front of the same registries (``bench.nginx``), or ``nginx_skipped`` says why not."""
        if problem := nginx_problem():
            self.nginx_skipped = problem
            return
        # Its own folder, readable by nginx's unprivileged worker (the bench's temp folder is private).
        folder = Path(tempfile.mkdtemp(prefix="passerelle-bench-nginx-"))
        folder.chmod(0o755)
        self._folders.append(folder)
        self.nginx, ports = start_nginx(folder, f"127.0.0.1:{self.grpc_registry}", f"127.0.0.1:{self.tax_registry}")
        self.nginx_grpc, self.nginx_rest = ports.grpc, ports.rest

    def start_gateway(self, workers: int = 1) -> None:
        self.stop_gateway()
        self.gateway_grpc, self.gateway_rest = free_port(), free_port()
        cmd = [sys.executable, "-m", "gateway.entrypoints.cli", "serve", "--config", str(self._config()),
               "--rest-port", str(self.gateway_rest), "--grpc-port", str(self.gateway_grpc),
               "--workers", str(workers)]  # fmt: skip
        self.gateway, _ = _spawn(f"gateway-{workers}w", cmd, self.workdir, "Passerelle ready: ")
        deadline = time.monotonic() + 60
        while len(self.gateway.pids) < workers or _ready_lines(self.gateway.log) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway workers not ready; see {self.gateway.log}")
            time.sleep(0.1)

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None

    def _config(self) -> Path:
        """The demo configuration, pointed at the running demo registries."""
        text = (self.data_dir / "gateway.toml").read_text()
        grpc_block = 'adapter = "grpc"\ndemo = true'
        rest_block = 'adapter = "rest"\ndemo = true'
        assert text.count(grpc_block) == 2 and text.count(rest_block) == 1, "demo configuration changed shape"
        text = text.replace(grpc_block, f'adapter = "grpc"\ntarget = "127.0.0.1:{self.grpc_registry}"')
        text = text.replace(rest_block, f'adapter = "rest"\nbase_url = "http://127.0.0.1:{self.tax_registry}"')
        # The benchmark drives one consumer far past the demo quota (1,000/s): lift it, or the gateway
        # would be measured answering RATE_LIMITED, which is cheaper than an exchange.
        quota = "rate_per_s = 1000\nburst = 2000\nmax_concurrent = 128"
        assert quota in text, "demo quota lines changed shape"
        text = text.replace(quota, "rate_per_s = 0\nburst = 2000\nmax_concurrent = 0")
        path = self.data_dir / "bench.toml"
        path.write_text(text)
        return path

    def audit_ok_count(self) -> int:
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.data_dir / "audit.db", timeout=30)) as db:
            return int(db.execute("SELECT COUNT(*) FROM audit_log WHERE outcome = 'ok'").fetchone()[0])

    def stop(self) -> None:
        self.stop_gateway()
        if self.demo is not None:
            self.demo.stop()
        for proc in (self.proxy, self.nginx):
            if proc is not None:
                proc.stop()
        self.registries.stop()
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)


def start_nginx(folder: Path, grpc_upstream: str, rest_upstream: str) -> tuple[Proc, NginxPorts]:
    """nginx (``bench.nginx``) on two free 127.0.0.1 ports, forwarding to the two ``host:port`` upstreams.

    Its configuration, logs and pid go to ``folder``; returns once both ports accept connections and
    its worker runs (``RuntimeError`` with the error log's end otherwise). ``Proc.stop`` ends it (SIGTERM to
    the master).
    """
    ports = NginxPorts(free_port(), free_port(), grpc_upstream, rest_upstream)
    log = folder / "nginx.out"
    with log.open("w") as out:
        popen = subprocess.Popen(nginx_command(folder, ports), stdout=out, stderr=out, text=True)
    proc = Proc("nginx", popen, folder / "error.log", workers="nginx: worker", with_parent=True)
    try:
        _wait_listening("nginx", popen, (ports.grpc, ports.rest), folder / "error.log")
        deadline = time.monotonic() + 10   # the master listens before it forks its worker
        while len(proc.pids) < 2:
            if time.monotonic() > deadline or popen.poll() is not None:
                raise RuntimeError(f"nginx started no worker process; see {folder / 'error.log'}")
            time.sleep(0.02)
    except RuntimeError:
        proc.stop()
        raise
    return proc, ports


def _wait_listening(name: str, popen: subprocess.Popen[str], ports: tuple[int, ...], log: Path,
                    timeout: float = 20) -> None:  # fmt: skip
    """Wait until every port of ``ports`` on 127.0.0.1 accepts a connection, or say why not."""
    deadline = time.monotonic() + timeout
    waiting = list(ports)
    while waiting:
        if popen.poll() is not None:
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{name} exited ({popen.returncode}): {text[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not listening on {waiting} after {timeout} s; see {log}")
        with socket.socket() as s, contextlib.suppress(OSError):
            s.settimeout(0.5)
            s.connect(("127.0.0.1", waiting[0]))
            waiting.pop(0)
            continue
        time.sleep(0.05)


def _ready_lines(log: Path) -> int:
    return sum("Passerelle ready: " in line for line in log.read_text().splitlines())


def _grant_consent(data_dir: Path, nid: str) -> None:
    """A standing consent so that the REST scenario (income certificate, A6-1-a) is allowed."""
    import asyncio

    from adapters.stores.consent_sqlite import SqliteConsentStore

    subject = Pseudonymiser((data_dir / "keys" / "pseudonym.key").read_bytes())(nid)
    store = SqliteConsentStore(data_dir / "consents.db")

    async def add() -> None:
        if await store.get(f"bench-{nid}") is None:
            await store.add(Consent(f"bench-{nid}", subject, "cedies", "student-aid",
                                    granted_us=time.time_ns() // 1000))  # fmt: skip
        await store.close()

    asyncio.run(add())


@contextlib.contextmanager
def start_stack(workdir: Path, persons: int = 10_000) -> Iterator[Stack]:
    from gateway.demo.data import generate

    data_dir = workdir / "gateway"
    ensure_demo(data_dir)
    data = generate(SEED, persons)
    nid = next(p.national_id for p in data.persons if data.income(p.national_id, INCOME_YEAR) is not None)
    _grant_consent(data_dir, nid)
    registries, line = _spawn("registries", [sys.executable, "-m", "gateway.demo.registries", "--seed", str(SEED),
                                             "--persons", str(persons)], workdir, "READY")  # fmt: skip
    ports = dict(p.split("=") for p in line.split()[1:])
    stack = Stack(workdir, data_dir, registries, int(ports["grpc"]), int(ports["tax"]), nid=nid)
    try:
        yield stack
    finally:
        stack.stop()
