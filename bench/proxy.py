"""The bare pass-through proxy: the gateway's stack with none of its work (the floor, scenario b).

Same stack as the gateway: grpc.aio and FastAPI/uvicorn (httptools) on one uvloop
loop; outbound gRPC on one channel, outbound HTTP with httpx on the aiohttp
transport. No token, no mandate, no consent, no minimisation, no audit: gRPC
bytes are forwarded as they are; REST requests are forwarded path and query
unchanged and the body returned as it is.

    python -m bench.proxy --grpc-target 127.0.0.1:P --rest-base http://127.0.0.1:Q
    -> prints "READY grpc=<port> rest=<port>" then serves until SIGTERM
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import grpc
import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from httpx_aiohttp import AiohttpTransport

from gateway.entrypoints.server import _EmbeddedUvicorn, bind_socket

__all__ = ["main"]


class _Forward(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc ships no type information: its base classes are Any
    """Every method: forward the request bytes, return the answer bytes."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel
        self._callables: dict[str, Any] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method
        fn = self._callables.get(method)
        if fn is None:
            fn = self._callables[method] = self._channel.unary_unary(method)

        async def handle(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            try:
                answer: bytes = await fn(raw, timeout=context.time_remaining() or 5.0)
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
                raise AssertionError("unreachable") from None
            return answer

        return grpc.unary_unary_rpc_method_handler(handle)


def _rest_app(client: httpx.AsyncClient) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/{path:path}")
    async def forward(path: str, request: Request) -> Response:
        upstream = await client.get("/" + path, params=request.query_params)
        return Response(upstream.content, status_code=upstream.status_code,
                        media_type=upstream.headers.get("content-type"))  # fmt: skip

    return app


async def serve(grpc_target: str, rest_base: str, host: str = "127.0.0.1") -> None:
    channel = grpc.aio.insecure_channel(grpc_target)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([_Forward(channel)])
    grpc_port = server.add_insecure_port(f"{host}:0")
    await server.start()
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    client = httpx.AsyncClient(base_url=rest_base, transport=AiohttpTransport(limits=limits), limits=limits)
    sock = bind_socket(host, 0)
    uv = _EmbeddedUvicorn(uvicorn.Config(_rest_app(client), log_level="warning", access_log=False, lifespan="off",
                                         http="httptools", loop="none"))  # fmt: skip
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    while not uv.started:
        await asyncio.sleep(0.01)
    print(f"READY grpc={grpc_port} rest={sock.getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    uv.should_exit = True
    await server.stop(1)
    await task
    await client.aclose()
    await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy")
    parser.add_argument("--grpc-target", required=True)
    parser.add_argument("--rest-base", required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.grpc_target, args.rest_base))


if __name__ == "__main__":
    main()
