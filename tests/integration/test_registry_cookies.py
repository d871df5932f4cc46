"""A registry's cookies are never kept: one agency's exchange carries no state into another's."""

from __future__ import annotations

import asyncio

from adapters.registries import FieldMapping, RestOperationSpec, RestRegistryAdapter
from gateway._pb.registry.tax.v1 import tax_pb2
from gateway.core.contracts import load_operations

SPEC = RestOperationSpec("GET", "/api/v2/revenus/{national_id}/{fiscal_year}",
                         response={"fiscal_year": FieldMapping("exercice", "int")})


async def test_a_cookie_set_by_the_registry_is_not_sent_back() -> None:
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:   # keep-alive: several requests on one connection
            head = await reader.readuntil(b"\r\n\r\n")
            seen.append(head)
            body = b'{"exercice": 2024}'
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"set-cookie: session=agency-a; Path=/\r\nset-cookie: other=x; Path=/; Max-Age=3600\r\n"
                         b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ops = {o.method: o for o in load_operations(["registry.tax.v1.TaxRegistry"]).values()}
    adapter = RestRegistryAdapter(f"http://127.0.0.1:{port}", ops, {"GetIncomeCertificate": SPEC})
    try:
        for _ in range(3):
            await adapter.call("GetIncomeCertificate",
                               tax_pb2.GetIncomeCertificateRequest(national_id="1991062434054", fiscal_year=2024),
                               timeout=5, metadata=[("x-request-id", "r-1")])
    finally:
        await adapter.close()
        server.close()
        await server.wait_closed()
    assert len(seen) == 3
    assert not any(b"cookie:" in h.lower() for h in seen), seen[1:]
