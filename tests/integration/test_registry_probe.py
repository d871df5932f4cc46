"""The active registry probe has a deadline: a registry that accepts connections but never answers is not healthy."""

from __future__ import annotations

import asyncio
import socket
import time

from observability.registry_health import RegistryHealth, RegistryProbe


def _health(address: str) -> RegistryHealth:
    return RegistryHealth([RegistryProbe("acd", "rest", address, "")], clock_us=lambda: 0, timeout_s=0.5)


async def test_a_rest_registry_whose_port_accepts_but_never_answers_is_timeout_not_serving() -> None:
    """As a SIGSTOPped process: the kernel completes the handshake, nobody reads."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen()
        started = time.monotonic()
        report = await _health(f"http://127.0.0.1:{hung.getsockname()[1]}").readiness()
    assert report["registries"]["acd"]["probe"] == "timeout"
    assert report["ready"] is False
    assert time.monotonic() - started < 2


async def test_a_rest_registry_answering_any_http_status_is_serving() -> None:
    async def not_found(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_found, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        report = await _health(f"http://127.0.0.1:{port}/api").readiness()
    assert report["registries"]["acd"]["probe"] == "serving"


async def test_a_rest_registry_refusing_connections_is_unreachable() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    report = await _health(f"http://127.0.0.1:{port}").readiness()
    assert report["registries"]["acd"]["probe"] == "unreachable"
