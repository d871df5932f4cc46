"""`gateway serve` as a user runs it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.demo.setup import demo_token


def test_a_taken_port_is_a_clear_message_and_exit_code_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gateway.entrypoints.cli", "serve", "--demo", "--data-dir", str(tmp_path),
             "--persons", "200", "--rest-port", str(port), "--grpc-port", "0"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"cannot listen on REST 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def _serve(data_dir: Path, rest: int = 0, grpc: int = 0) -> list[str]:
    return [sys.executable, "-m", "gateway.entrypoints.cli", "serve", "--demo", "--data-dir", str(data_dir),
            "--persons", "200", "--rest-port", str(rest), "--grpc-port", str(grpc)]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_EARLY_LINES: dict[int, list[str]] = {}   # what a started gateway wrote before it was ready


def _started(cmd: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline and (line := proc.stderr.readline()):
        seen.append(line)
        if "Passerelle ready" in line:
            _EARLY_LINES[proc.pid] = seen
            return proc
    proc.kill()
    raise AssertionError("".join(seen)[-3000:])


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return err


def test_a_second_gateway_on_the_same_data_folder_names_the_first_and_exits_2(tmp_path: Path) -> None:
    first = _started(_serve(tmp_path))
    try:
        second = subprocess.run(_serve(tmp_path), capture_output=True, text=True, timeout=60, check=False)
    finally:
        _stop(first)
    assert second.returncode == 2, second.stderr[-2000:]
    lines = [line for line in second.stderr.splitlines() if "data folder" in line]
    assert len(lines) == 1, second.stderr[-2000:]
    assert f"pid {first.pid}" in lines[0]
    assert "Traceback" not in second.stderr


def test_a_second_gateway_on_the_same_ports_names_the_first_and_exits_2(tmp_path: Path) -> None:
    rest, grpc = _free_port(), _free_port()
    first = _started(_serve(tmp_path / "a", rest, grpc))
    try:
        second = subprocess.run(_serve(tmp_path / "b", rest, grpc), capture_output=True, text=True, timeout=60,
                                check=False)  # fmt: skip
    finally:
        _stop(first)
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"cannot listen on REST 127.0.0.1:{rest}: already in use." in second.stderr
    assert f"It is held by pid {first.pid}: " in second.stderr


def test_workers_share_the_ports_and_the_data_folder_and_the_supervisor_sums_up_the_stop(tmp_path: Path) -> None:
    """`--workers 2`: the supervisor holds the lock; its workers bind the same ports without conflict."""
    proc = _started([*_serve(tmp_path, _free_port(), _free_port()), "--workers", "2"])
    assert proc.stderr is not None
    while "Passerelle ready" not in (line := proc.stderr.readline()):   # the second worker too
        assert line, "the second worker never got ready"
    err = _stop(proc)
    assert proc.returncode == 0, err[-2000:]
    assert "already in use" not in err
    entries = [json.loads(line) for line in err.splitlines()]
    workers = [e for e in entries if e["message"].startswith("stopped")]
    summary = [e for e in entries if e["message"].startswith("Passerelle supervisor stopped")]
    assert len({e["pid"] for e in workers}) == 2 and all(e["drained"] for e in workers)
    assert len(summary) == 1 and summary[0]["drained"] is True


def test_a_second_gateway_on_the_ports_of_workers_names_their_supervisor(tmp_path: Path) -> None:
    rest, grpc = _free_port(), _free_port()
    first = _started([*_serve(tmp_path / "a", rest, grpc), "--workers", "2"])
    try:
        second = subprocess.run(_serve(tmp_path / "b", rest, grpc), capture_output=True, text=True, timeout=60,
                                check=False)  # fmt: skip
    finally:
        _stop(first)
    assert second.returncode == 2
    assert f"It is held by pid {first.pid}: " in second.stderr
    assert "(the supervisor of worker " in second.stderr
    assert not (tmp_path / "b").exists()   # nothing written: the ports were checked before the demo set-up


def test_the_lock_message_suggests_the_option_that_was_used(tmp_path: Path) -> None:
    first = _started(_serve(tmp_path))
    try:
        cmd = [sys.executable, "-m", "gateway.entrypoints.cli", "serve", "--config", str(tmp_path / "gateway.toml"),
               "--rest-port", "0", "--grpc-port", "0"]
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    finally:
        _stop(first)
    assert second.returncode == 2
    assert second.stderr.count("\n") == 1 and "(--config with another data folder)" in second.stderr
    assert f"pid {first.pid}: " in second.stderr and "--data-dir" in second.stderr   # the first one's command line


def test_every_line_written_is_json_uvicorn_included_and_shutdown_says_what_it_drained(tmp_path: Path) -> None:
    rest = _free_port()
    proc = _started(_serve(tmp_path, rest, _free_port()))
    with socket.create_connection(("127.0.0.1", rest)) as garbage:   # uvicorn logs "Invalid HTTP request"
        garbage.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        garbage.recv(1024)
    token = demo_token(tmp_path, issuer_id="demo-staff", subject="ops", scope="ops")
    answered = httpx.get(f"http://127.0.0.1:{rest}/v1/catalogue", headers={"authorization": f"Bearer {token}"})
    assert answered.status_code in (200, 403)
    err = _stop(proc)
    lines = [line.rstrip("\n") for line in _EARLY_LINES[proc.pid]] + err.splitlines()
    entries = [json.loads(line) for line in lines]   # raises on any line that is not JSON
    assert any(e["logger"].startswith("uvicorn") for e in entries), err[-2000:]
    stopped = [e for e in entries if e["message"].startswith("stopped")]
    assert len(stopped) == 1
    report = stopped[0]
    assert report["rest_in_flight_at_signal"] == 0 and report["rest_unfinished"] == 0   # answered before SIGTERM
    assert report["grpc_in_flight_at_signal"] == 0 and report["grpc_unfinished"] == 0
    assert report["drained"] is True and {"took_ms", "audit", "pid"} <= report.keys()
