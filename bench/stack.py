"""The processes under test: demo registries, bare proxy, gateway (1..N workers), each its own process.

CPU and memory are read from /proc: ``utime + stime`` of a process (and of its
worker children) and ``VmHWM`` (peak resident set).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from consent import Consent
from gateway.core.pseudonym import Pseudonymiser
from gateway.demo.setup import demo_token, ensure_demo

__all__ = ["Proc", "Stack", "free_port", "start_stack"]

_TICK = os.sysconf("SC_CLK_TCK")
SEED = 20260101
INCOME_YEAR = 2024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[str]
    log: Path

    @property
    def pids(self) -> list[int]:
        """This process, and its children when it supervises workers."""
        pid = self.popen.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        workers = [int(c) for c in children if "spawn_main" in _cmdline(int(c))]
        return workers or [pid]

    def cpu_s(self) -> float:
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
        return total

    def rss_kb(self, key: str = "VmHWM") -> int:
        total = 0
        for pid in self.pids:
            with contextlib.suppress(OSError):
                m = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
                total += int(m.group(1)) if m else 0
        return total

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


def _spawn(name: str, cmd: list[str], workdir: Path, ready: str, timeout: float = 60) -> tuple[Proc, str]:
    """Start ``cmd``; wait for a line containing ``ready`` on stdout or stderr; return it."""
    log = workdir / f"{name}.log"
    out = log.open("w")
    env = {**os.environ, "PASSERELLE_LOG_LEVEL": "WARNING"}
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
    nid: str = ""
    procs: list[Proc] = field(default_factory=list)

    def token(self) -> str:
        return demo_token(self.data_dir, issuer_id="demo-agencies", subject="cedies", scope="exchange")

    def start_proxy(self) -> None:
        self.proxy, line = _spawn("proxy", [sys.executable, "-m", "bench.proxy",
                                            "--grpc-target", f"127.0.0.1:{self.grpc_registry}",
                                            "--rest-base", f"http://127.0.0.1:{self.tax_registry}"],
                                  self.workdir, "READY")  # fmt: skip
        ports = dict(p.split("=") for p in line.split()[1:])
        self.proxy_grpc, self.proxy_rest = int(ports["grpc"]), int(ports["rest"])

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
        if self.proxy is not None:
            self.proxy.stop()
        self.registries.stop()


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
