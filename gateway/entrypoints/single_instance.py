"""One gateway per data folder and per port pair.

The gateway's own sockets set ``SO_REUSEPORT`` (so that ``--workers N`` share the
ports), which would also let a second, unrelated gateway bind the same ports and
silently take half the connections. Before binding, the ``serve`` command
therefore checks that nobody else listens there, and takes an exclusive lock
(``fcntl.flock``) on ``gateway.lock`` in the data folder: the folder holding the
local SQLite exchange log. A gateway whose log is PostgreSQL takes no lock: several
gateways sharing one database is the supported way to scale out.

The workers of one ``serve --workers N`` share what their supervisor checked and
locked: only the supervisor runs these checks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from gateway.config import Config

__all__ = ["LOCK_NAME", "InstanceConflict", "check_ports_free", "data_folder", "hold_data_folder", "port_owner"]

LOCK_NAME = "gateway.lock"


class InstanceConflict(Exception):
    """Another process holds the data folder or a port; the message is one line naming it."""


def data_folder(config: Config) -> Path | None:
    """The folder of the local exchange log, or None when the log is a shared database."""
    audit = config.gateway.audit
    if not audit.startswith("sqlite:"):
        return None
    return config.path(audit.removeprefix("sqlite:")).resolve().parent


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), 0)


def _describe(pid: int) -> str:
    """``pid N: COMMAND LINE``, whole; a ``--workers`` worker is named by its supervisor, the process to stop."""
    cmdline = _cmdline(pid)
    if "multiprocessing" in cmdline and (parent := _parent(pid)) > 1 and _cmdline(parent):
        return f"pid {parent}: {_cmdline(parent)} (the supervisor of worker {pid})"
    return f"pid {pid}: {cmdline}" if cmdline else f"pid {pid}"


@contextlib.contextmanager
def hold_data_folder(folder: Path, hint: str = "--data-dir") -> Iterator[Path]:
    """Hold ``folder/gateway.lock`` (holding our pid) for the duration; raise ``InstanceConflict`` if taken.

    ``hint``: how this gateway was given its folder (``--data-dir``, or ``--config`` naming another).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip()
            who = _describe(int(other)) if other.isdigit() else "another process"
            raise InstanceConflict(
                f"another gateway already uses the data folder {folder} (it holds {path}): {who}. "
                f"Stop it, or give this one its own data folder ({hint})."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)   # releases the lock; the file stays (removing it would race a newcomer's flock)


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in list(f)[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:   # 0A: LISTEN
                    inodes.add(cols[9])
    return inodes


def port_owner(port: int) -> str:
    """Which process listens on ``port`` (Linux /proc, processes we may inspect), or ''."""
    wanted = {f"socket:[{i}]" for i in _listening_inodes(port)}
    if not wanted:
        return ""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        return _describe(int(entry.name))
    return ""


def check_ports_free(ports: list[tuple[str, str, int]]) -> None:
    """``(label, host, port)``: raise ``InstanceConflict`` naming the holder of the first port in use."""
    for label, host, port in ports:
        if port == 0:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # TIME_WAIT is not "in use"
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EPERM):
                    raise InstanceConflict(
                        f"cannot listen on {label} {host}:{port}: permission denied (ports below 1024 need root or "
                        "CAP_NET_BIND_SERVICE). Choose another with --rest-port / --grpc-port."
                    ) from None
                if exc.errno != errno.EADDRINUSE:
                    raise InstanceConflict(f"cannot listen on {label} {host}:{port}: {exc.strerror}") from None
                owner = port_owner(port)
                raise InstanceConflict(
                    f"cannot listen on {label} {host}:{port}: already in use. Free the port or choose others "
                    "with --rest-port / --grpc-port." + (f" It is held by {owner}" if owner else "")
                ) from None
