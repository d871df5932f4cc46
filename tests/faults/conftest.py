"""Fault injection: a demo stack per test (registries with live ``Faults``, one gateway), and a
throw-away PostgreSQL server that tests may stop and restart (never the machine's shared one).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from consent import Consent
from gateway.bootstrap import resolve_demo_addresses
from gateway.config import Config, load_config
from gateway.core.clock import now_us
from gateway.core.ports import AuditQuery
from gateway.core.types import StoredAuditRecord
from gateway.demo.data import DemoData, generate
from gateway.demo.registries import Faults, TaxRegistryHandle, start_grpc_registry, start_tax_registry
from gateway.demo.setup import demo_token, ensure_demo
from gateway.entrypoints.server import RunningGateway, start_gateway

SEED = 20260101


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FaultStack:
    data: DemoData
    data_dir: Path
    config: Config
    running: RunningGateway
    rest: httpx.AsyncClient
    channel: grpc.aio.Channel
    faults: Faults
    tax_faults: Faults
    grpc_registry: grpc.aio.Server
    grpc_registry_port: int
    tax: TaxRegistryHandle
    _tokens: dict[str, str] = field(default_factory=dict)

    def token(self, consumer: str = "cedies") -> str:
        if consumer not in self._tokens:
            self._tokens[consumer] = demo_token(self.data_dir, issuer_id="demo-agencies", subject=consumer,
                                                scope="exchange")  # fmt: skip
        return self._tokens[consumer]

    def headers(self, request_id: str, consumer: str = "cedies", purpose: str = "student-aid") -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(consumer)}", "x-purpose": purpose, "x-request-id": request_id}

    def metadata(self, request_id: str) -> tuple[tuple[str, str], ...]:
        return tuple(self.headers(request_id).items())

    def person(self, n: int = 0) -> str:
        return self.data.persons[n].national_id

    def taxpayer(self, year: int = 2024) -> str:
        for p in self.data.persons:
            if self.data.income(p.national_id, year) is not None:
                return p.national_id
        raise AssertionError("no taxpayer in the demo data")

    async def grant_consent(self, nid: str) -> None:
        subject = self.running.gateway.pseudonymise(nid)
        await self.running.gateway.consents.add(
            Consent(f"fault-{nid}", subject, "cedies", "student-aid", granted_us=now_us())
        )

    async def stop_grpc_registry(self) -> None:
        await self.grpc_registry.stop(0)

    async def restart_grpc_registry(self) -> None:
        self.grpc_registry, _ = await start_grpc_registry(self.data, port=self.grpc_registry_port, faults=self.faults)

    async def records(self) -> list[StoredAuditRecord]:
        return list(await self.running.gateway.audit.query(AuditQuery(limit=100_000)))


def registry_overrides(config: Config, **updates: Any) -> Config:
    return config.model_copy(update={"registries": [r.model_copy(update=updates) for r in config.registries]})


@contextlib.asynccontextmanager
async def fault_stack(tmp: Path, *, audit: str = "", **registry: Any) -> AsyncIterator[FaultStack]:
    """Registries + gateway on free ports; ``registry`` overrides every registry's section."""
    data = generate(SEED, persons=200)
    faults, tax_faults = Faults(), Faults()
    reg, grpc_port = await start_grpc_registry(data, faults=faults)
    tax, tax_port = await start_tax_registry(data, faults=tax_faults)
    config = resolve_demo_addresses(load_config(ensure_demo(tmp)), grpc_port, tax_port)
    config = registry_overrides(config, **registry)
    if audit:
        config = config.model_copy(update={"gateway": config.gateway.model_copy(update={"audit": audit})})
    running = await start_gateway(config, rest_port=0, grpc_port=0)
    rest = httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.rest_port}", timeout=10)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc_port}")
    stack = FaultStack(data, tmp, config, running, rest, channel, faults, tax_faults, reg, grpc_port, tax)
    try:
        yield stack
    finally:
        await rest.aclose()
        await channel.close()
        await running.stop(1.0)
        await stack.grpc_registry.stop(0)
        await tax.stop()


# --- a PostgreSQL of our own ------------------------------------------------------------------


@dataclass
class ThrowawayPostgres:
    """A private PostgreSQL cluster in a temp dir, on a free port, that tests may stop and start."""

    bindir: Path
    datadir: Path
    port: int
    user: str | None  # run pg_ctl as this user (initdb refuses root)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?connect_timeout=2"

    def _ctl(self, *args: str) -> None:
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "30", *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", opts, "-l", str(self.datadir / "log"), "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="session")
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    bindir = _pg_bindir()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin")
    user = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="passerelle-pg-"))
    datadir = base / "data"
    datadir.mkdir()
    if user:
        shutil.chown(base, user)
        shutil.chown(datadir, user)
    initdb = [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "-A", "trust", "--no-sync"]
    subprocess.run((["runuser", "-u", user, "--"] if user else []) + initdb, check=True, capture_output=True,
                   timeout=120)  # fmt: skip
    pg = ThrowawayPostgres(bindir, datadir, free_port(), user)
    pg.start()
    try:
        yield pg
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            pg.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest_asyncio.fixture
async def stack(tmp_path: Path) -> AsyncIterator[FaultStack]:
    """Default stack: quick breaker, small retry budget."""
    async with fault_stack(tmp_path, breaker_failures=3, breaker_open_s=0.3) as s:
        yield s


def write_config(data_dir: Path, grpc_port: int, tax_port: int, *, audit: str = "") -> Path:
    """The demo configuration as a file pointed at running registries (for ``gateway serve --config``)."""
    text = ensure_demo(data_dir).read_text()
    grpc_block, rest_block = 'adapter = "grpc"\ndemo = true', 'adapter = "rest"\ndemo = true'
    assert text.count(grpc_block) == 2 and text.count(rest_block) == 1, "demo configuration changed shape"
    text = text.replace(grpc_block, f'adapter = "grpc"\ntarget = "127.0.0.1:{grpc_port}"')
    text = text.replace(rest_block, f'adapter = "rest"\nbase_url = "http://127.0.0.1:{tax_port}"')
    if audit:
        text = text.replace('audit = "sqlite:audit.db"', f'audit = "{audit}"', 1)
    path = data_dir / "faults.toml"
    path.write_text(text)
    return path
