"""`gateway serve` as a user runs it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


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
