"""The C reference hop: Debian's nginx as a pass-through proxy beside the Python one (``bench.proxy``).

What a native proxy costs on the same machine, for the same two exchanges: ``grpc_pass``
(HTTP/2 cleartext on both sides) to the demo gRPC registry, and ``proxy_pass`` (HTTP/1.1,
keep-alive upstream connections) to the REST tax registry, path and query unchanged. No
token, no checks, no audit, no access log. One worker process (``worker_processes 1``):
its CPU and the master's are read from /proc like the other hops'.

The configuration is written to a folder of its own (error log, pid, lock and temp paths
there too) and nginx runs in the foreground as the bench's child::

    nginx -p DIR -e DIR/error.log -c DIR/nginx.conf -g 'daemon off;'
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "NginxPorts", "config_test", "nginx_binary", "nginx_command", "nginx_config", "nginx_problem", "nginx_version",
]

#: Modules the two passes need, as ``nginx -V`` names the switches that would remove them.
_WITHOUT = ("--without-http_grpc_module", "--without-http_proxy_module", "--without-http_upstream_keepalive_module")


@dataclass(frozen=True)
class NginxPorts:
    """Where nginx listens (``grpc``: HTTP/2 cleartext, ``rest``: HTTP/1.1) and where it forwards."""

    grpc: int
    rest: int
    grpc_upstream: str  # "127.0.0.1:P", the gRPC registry
    rest_upstream: str  # "127.0.0.1:Q", the REST tax registry (host:port, no scheme)


def nginx_binary(binary: str = "nginx") -> str | None:
    """The path of ``binary``: on ``PATH``, else in the sbin folders Debian installs it to (not on a user's PATH)."""
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/local/sbin:/sbin")


def nginx_problem(binary: str = "nginx") -> str:
    """'' when ``binary`` is installed with HTTP/2, gRPC and proxy modules; else one line saying why not.

    Reads ``nginx -V`` (which prints to stderr). The answer names what to install (Debian: ``nginx-light``).
    """
    path = nginx_binary(binary)
    if path is None:
        return f"{binary} is not installed (Debian: apt-get install nginx-light)"
    try:
        done = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{path} -V failed: {exc}"
    build = done.stderr + done.stdout
    missing = [switch.removeprefix("--without-") for switch in _WITHOUT if switch in build]
    if "--with-http_v2_module" not in build:
        missing.append("http_v2_module")
    if missing:
        return f"{path} lacks {', '.join(missing)} (Debian: apt-get install nginx-light or nginx-core)"
    return ""


def nginx_version(binary: str = "nginx") -> str:
    """``nginx/1.22.1``, as ``nginx -v`` says it ('' when it cannot be run)."""
    try:
        done = subprocess.run([nginx_binary(binary) or binary, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"nginx/\S+", done.stderr + done.stdout)
    return m.group(0) if m else ""


def nginx_config(folder: Path, ports: NginxPorts) -> str:
    """The whole ``nginx.conf`` text: one worker, no access log, everything written under ``folder``.

    Upstream connections are kept alive (``keepalive``; HTTP/1.1 with an empty ``Connection`` header
    for REST, HTTP/2 for gRPC) and so are the clients' (``keepalive_requests``), so that a run of
    many thousand requests on a few connections measures forwarding, not reconnecting.
    """
    d = folder.resolve()
    return f"""\
# Written by bench/nginx.py: the benchmark's C reference hop (a pass-through proxy).
worker_processes 1;
pid {d}/nginx.pid;
lock_file {d}/nginx.lock;
error_log {d}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    client_body_temp_path {d}/temp/body;
    proxy_temp_path {d}/temp/proxy;
    fastcgi_temp_path {d}/temp/fastcgi;
    uwsgi_temp_path {d}/temp/uwsgi;
    scgi_temp_path {d}/temp/scgi;

    upstream grpc_registry {{
        server {ports.grpc_upstream};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    upstream tax_registry {{
        server {ports.rest_upstream};
        keepalive 256;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{ports.grpc} http2;
        location / {{
            grpc_pass grpc://grpc_registry;
        }}
    }}
    server {{
        listen 127.0.0.1:{ports.rest};
        location / {{
            proxy_pass http://tax_registry;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def nginx_command(folder: Path, ports: NginxPorts, binary: str = "nginx") -> list[str]:
    """Write ``folder/nginx.conf`` (and its temp folders); return the command that runs nginx on it.

    The command keeps nginx in the foreground (``daemon off``) so that the bench owns its master
    process: stopping it (SIGTERM) stops the worker too.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "temp").mkdir(exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(nginx_config(folder, ports))
    d = str(folder.resolve())
    return [nginx_binary(binary) or binary, "-p", d, "-e", f"{d}/error.log", "-c", str(conf.resolve()),
            "-g", "daemon off;"]  # fmt: skip


def config_test(folder: Path, ports: NginxPorts, binary: str = "nginx") -> str:
    """'' when ``nginx -t`` accepts the configuration written for ``ports``; else what it said."""
    cmd = nginx_command(folder, ports, binary)
    done = subprocess.run([*cmd[:-2], "-t"], capture_output=True, text=True, timeout=30)
    out = (done.stderr + done.stdout).strip()
    return "" if done.returncode == 0 else re.sub(r"\s+", " ", out)[-1000:]
