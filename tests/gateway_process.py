"""Real gateway processes for fault tests: ``gateway serve --config`` on free ports, demo registries beside it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.demo.setup import demo_token, ensure_demo

REPO = Path(__file__).resolve().parents[1]
SEED = 20260101
PERSONS = 400
_READY = re.compile(r"Passerelle ready: REST http://[\d.]+:(\d+)\s+gRPC [\d.]+:(\d+)")


@contextlib.contextmanager
def demo_registries(persons: int = PERSONS, changes: Path | None = None) -> Iterator[tuple[int, int]]:
    """The demo registries in their own process (the population register's change log in ``changes``,
    else in memory); yield (gRPC port, tax REST port)."""
    cmd = [sys.executable, "-m", "gateway.demo.registries", "--seed", str(SEED), "--persons", str(persons),
           "--grpc-port", "0", "--tax-port", "0", *(["--changes", str(changes)] if changes else [])]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY"), f"demo registries did not start: {line!r}"
        ports = dict(part.split("=") for part in line.split()[1:])
        yield int(ports["grpc"]), int(ports["tax"])
    finally:
        proc.terminate()
        proc.wait(10)


def write_config(data_dir: Path, grpc_port: int, tax_port: int, **gateway: object) -> Path:
    """The demo configuration with the registries' real addresses and ``[gateway]`` overrides."""
    text = ensure_demo(data_dir).read_text()
    grpc_demo = 'adapter = "grpc"\ndemo = true'
    rest_demo = 'adapter = "rest"\ndemo = true'
    assert text.count(grpc_demo) == 2 and text.count(rest_demo) == 1, "the demo configuration changed shape"
    text = text.replace(grpc_demo, f'adapter = "grpc"\ntarget = "127.0.0.1:{grpc_port}"')
    text = text.replace(rest_demo, f'adapter = "rest"\nbase_url = "http://127.0.0.1:{tax_port}"')
    for key in gateway:  # the template's own line for an overridden key goes
        text = re.sub(rf"(?m)^{key} = .*\n", "", text, count=1)
    overrides = "".join(f"{k} = {_toml(v)}\n" for k, v in gateway.items())
    text = text.replace("[gateway]\n", f"[gateway]\n{overrides}", 1)
    path = data_dir / "serve.toml"
    path.write_text(text)
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    rest_port: int
    grpc_port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def kill(self) -> None:
        """kill -9: no drain, no flush."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def start_gateway_process(
    args: list[str], log: Path, *, timeout_s: float = 30, rest_port: int = 0
) -> GatewayProcess:
    """``gateway serve ARGS`` on free ports (or REST on ``rest_port``); returns once it says it is ready."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, "PYTHONPATH": path, "PASSERELLE_LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", "gateway.entrypoints.cli", "serve", *args, "--rest-port", str(rest_port),
           "--grpc-port", "0"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = _READY.search(log.read_text(errors="replace"))
        if match:
            return GatewayProcess(proc, int(match.group(1)), int(match.group(2)), log)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    raise AssertionError(f"gateway did not start:\n{log.read_text(errors='replace')[-3000:]}")


def agency_headers(data_dir: Path, request_id: str, consumer: str = "cedies") -> dict[str, str]:
    token = demo_token(data_dir, issuer_id="demo-agencies", subject=consumer, scope="exchange")
    return {"authorization": f"Bearer {token}", "x-purpose": "student-aid", "x-request-id": request_id}
