"""A REST registry's hostile answers over a real loopback connection (aiohttp transport, as deployed):
a compression bomb is stopped by ``max_response_bytes`` counted on the decoded bytes, and an answer
dripped byte by byte is stopped by the call's timeout."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from adapters.registries import FieldMapping, RestOperationSpec, RestRegistryAdapter
from gateway._pb.registry.tax.v1 import tax_pb2
from gateway.core.contracts import load_operations
from gateway.core.errors import GatewayError, Reason

SPEC = RestOperationSpec("GET", "/api/v2/revenus/{national_id}/{fiscal_year}",
                         response={"fiscal_year": FieldMapping("exercice", "int")})
REQUEST = tax_pb2.GetIncomeCertificateRequest(national_id="1991062434054", fiscal_year=2024)
Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _gzip_bomb(decoded_mib: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)   # gzip framing
    out = packer.compress(b'{"exercice": 2024, "pad": "')
    mib = b" " * (1 << 20)
    out += b"".join(packer.compress(mib) for _ in range(decoded_mib))
    return out + packer.compress(b'"}') + packer.flush()


async def _call(serve: Serve, *, timeout: float, max_response_bytes: int = 1 << 20) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ops = {o.method: o for o in load_operations(["registry.tax.v1.TaxRegistry"]).values()}
    adapter = RestRegistryAdapter(f"http://127.0.0.1:{port}", ops, {"GetIncomeCertificate": SPEC},
                                  max_response_bytes=max_response_bytes)
    try:
        await adapter.call("GetIncomeCertificate", REQUEST, timeout=timeout, metadata=[])
    finally:
        await adapter.close()
        server.close()
        await server.wait_closed()


async def _quietly(writer: asyncio.StreamWriter, data: AsyncIterator[bytes]) -> None:
    try:
        async for chunk in data:
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def test_a_compression_bomb_is_refused_at_the_cap_on_the_decoded_bytes() -> None:
    bomb = _gzip_bomb(256)   # 256 MiB once decoded, about 256 KiB on the wire

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

        async def chunks() -> AsyncIterator[bytes]:
            yield (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
                   b"content-length: %d\r\n\r\n" % len(bomb))
            yield bomb

        await _quietly(writer, chunks())

    with pytest.raises(GatewayError) as raised:
        await _call(serve, timeout=10)
    assert raised.value.reason == Reason.REGISTRY_BAD_RESPONSE


async def test_an_answer_dripped_byte_by_byte_is_stopped_by_the_timeout() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

        async def drip() -> AsyncIterator[bytes]:
            yield b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n"
            for _ in range(100_000):
                yield b" "
                await asyncio.sleep(0.05)

        await _quietly(writer, drip())

    started = time.monotonic()
    with pytest.raises(GatewayError) as raised:
        await _call(serve, timeout=0.5)
    assert raised.value.reason == Reason.REGISTRY_TIMEOUT
    assert time.monotonic() - started < 2.0   # the whole answer would take 5,000 s
