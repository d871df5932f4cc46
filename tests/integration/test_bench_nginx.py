"""The benchmark's C reference hop: the nginx configuration it writes, and nginx forwarding both doors for real.

nginx runs between real upstreams on 127.0.0.1 (a gRPC server, an HTTP/1.1 server) for a few requests.
Without nginx the forwarding tests skip with the reason; with ``CI=true`` they fail instead, so CI cannot
go green without them (``.ci/run`` installs Debian's nginx-light).
"""

from __future__ import annotations

import http.client
import os
import stat
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest

from bench.nginx import NginxPorts, config_test, nginx_config, nginx_problem
from bench.stack import Proc, start_nginx

_PORTS = NginxPorts(18001, 18002, "127.0.0.1:19001", "127.0.0.1:19002")


def test_the_configuration_has_one_worker_no_access_log_and_everything_under_its_folder(tmp_path: Path) -> None:
    text = nginx_config(tmp_path, _PORTS)
    assert "worker_processes 1;" in text
    assert "access_log off;" in text
    words = [line.split() for line in text.splitlines() if line.strip()]
    named = ("pid", "lock_file", "error_log")
    paths = [w[1].rstrip(";") for w in words if w[0] in named or w[0].endswith("_temp_path")]
    assert len(paths) == 8
    assert all(p.startswith(str(tmp_path.resolve())) for p in paths), paths


def test_the_configuration_passes_grpc_over_h2c_and_rest_over_kept_alive_http_1_1(tmp_path: Path) -> None:
    text = nginx_config(tmp_path, _PORTS)
    assert "listen 127.0.0.1:18001 http2;" in text and "grpc_pass grpc://grpc_registry;" in text
    assert "listen 127.0.0.1:18002;" in text and "proxy_pass http://tax_registry;" in text
    assert "server 127.0.0.1:19001;" in text and "server 127.0.0.1:19002;" in text
    assert "proxy_http_version 1.1;" in text and 'proxy_set_header Connection "";' in text
    assert text.count("keepalive ") == 2


def test_a_missing_nginx_is_named_with_what_to_install() -> None:
    assert nginx_problem("passerelle-no-such-nginx") == (
        "passerelle-no-such-nginx is not installed (Debian: apt-get install nginx-light)"
    )


def test_an_nginx_built_without_the_grpc_module_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "nginx"
    fake.write_text("#!/bin/sh\necho 'configure arguments: --with-http_v2_module --without-http_grpc_module' >&2\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    problem = nginx_problem(str(fake))
    assert problem.startswith(f"{fake} lacks http_grpc_module"), problem


# --- nginx for real ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nginx_available() -> None:
    problem = nginx_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and nginx is required: {problem}")
        pytest.skip(problem)


class _Echo(grpc.GenericRpcHandler):
    """``/t.Echo/Reverse`` answers the request bytes reversed; ``/t.Echo/Missing`` answers NOT_FOUND."""

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        if details.method == "/t.Echo/Reverse":
            return grpc.unary_unary_rpc_method_handler(lambda raw, context: bytes(reversed(raw)))
        if details.method == "/t.Echo/Missing":

            def missing(raw: bytes, context: grpc.ServicerContext) -> bytes:
                context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
                raise AssertionError("unreachable")

            return grpc.unary_unary_rpc_method_handler(missing)
        return None


@dataclass
class _Seen:
    paths: list[str]
    connections: set[int]


@pytest.fixture
def upstreams() -> Iterator[tuple[int, int, _Seen]]:
    """(gRPC port, HTTP port, what the HTTP upstream saw: request paths and distinct client connections)."""
    seen = _Seen([], set())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # keep-alive, as the registries speak it

        def do_GET(self) -> None:
            seen.paths.append(self.path)
            seen.connections.add(self.client_address[1])
            body = f'{{"path": "{self.path}"}}'.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    http_server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http_server.serve_forever, daemon=True)
    thread.start()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    grpc_server.add_generic_rpc_handlers([_Echo()])
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    try:
        yield grpc_port, int(http_server.server_address[1]), seen
    finally:
        grpc_server.stop(None)
        http_server.shutdown()
        http_server.server_close()


@pytest.fixture
def nginx(
    nginx_available: None, upstreams: tuple[int, int, _Seen], tmp_path: Path
) -> Iterator[tuple[Proc, NginxPorts]]:
    grpc_port, http_port, _ = upstreams
    folder = tmp_path / "nginx"
    folder.mkdir()
    proc, ports = start_nginx(folder, f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http_port}")
    try:
        yield proc, ports
    finally:
        proc.stop()
    assert proc.popen.returncode is not None


def test_nginx_accepts_the_configuration_it_is_given(nginx_available: None, tmp_path: Path) -> None:
    assert config_test(tmp_path, _PORTS) == ""


def test_grpc_passes_through_nginx_bytes_and_status_unchanged(nginx: tuple[Proc, NginxPorts]) -> None:
    _, ports = nginx
    with grpc.insecure_channel(f"127.0.0.1:{ports.grpc}") as channel:
        reverse: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/t.Echo/Reverse")
        missing: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/t.Echo/Missing")
        for payload in (b"abc", b"\x00\x01\x02" * 100):
            assert reverse(payload, timeout=5) == bytes(reversed(payload))
        with pytest.raises(grpc.RpcError) as refused:
            missing(b"x", timeout=5)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert refused.value.details() == "no such thing"


def test_rest_passes_through_nginx_path_and_query_unchanged_on_one_kept_upstream_connection(
    nginx: tuple[Proc, NginxPorts], upstreams: tuple[int, int, _Seen]
) -> None:
    _, ports = nginx
    _, _, seen = upstreams
    client = http.client.HTTPConnection("127.0.0.1", ports.rest, timeout=5)
    try:
        for year in range(2020, 2025):
            path = f"/api/v2/attestations-revenu?matricule=1990010112345&annee={year}"
            client.request("GET", path)
            answer = client.getresponse()
            assert answer.status == 200
            assert answer.read() == f'{{"path": "{path}"}}'.encode()
    finally:
        client.close()
    assert len(seen.paths) == 5
    assert len(seen.connections) == 1   # keepalive upstream: five requests, one connection to the registry


def test_the_nginx_hop_is_measured_as_its_master_and_its_one_worker(nginx: tuple[Proc, NginxPorts]) -> None:
    proc, _ = nginx
    master, *workers = proc.pids
    assert master == proc.popen.pid
    assert len(workers) == 1
    assert "nginx: worker process" in Path(f"/proc/{workers[0]}/cmdline").read_bytes().decode()
    assert proc.cpu_s() >= 0 and proc.rss_kb() > 0
