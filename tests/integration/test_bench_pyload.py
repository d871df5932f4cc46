"""The benchmark's Python load generator, used when wrk or h2load are missing: a very short run over real sockets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.load import Call, run_load


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_the_python_generator_measures_a_rest_target(http_port: int) -> None:
    result = run_load(Call("rest", http_port, "/"), 2, 0.5, 0.1, force_python=True)
    assert result.generator.startswith("python")
    assert result.requests > 0 and result.errors == 0
    assert 0 < result.p50_ms <= result.p99_ms


def test_an_unreachable_target_counts_errors_instead_of_crashing() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = int(s.getsockname()[1])
    for protocol, path in (("rest", "/"), ("grpc", "/pkg.Service/Method")):
        result = run_load(Call(protocol, closed, path), 1, 0.3, 0.0, force_python=True)
        assert result.requests == 0 and result.errors > 0, protocol
