"""The Python fallback load generator: one process, ``concurrency`` closed-loop workers.

python -m bench.pyload SPEC_JSON CONCURRENCY DURATION_S WARMUP_S  -> one JSON line
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aiohttp
import grpc


async def _grpc_worker(spec: dict[str, Any], until: float, start: float, out: list[float]) -> int:
    errors = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{spec['port']}") as channel:
        fn = channel.unary_unary(spec["path"])
        body, md = bytes.fromhex(spec["body"]), tuple(tuple(h) for h in spec["headers"])
        while (t := time.perf_counter()) < until:
            try:
                await fn(body, metadata=md, timeout=10)
            except grpc.aio.AioRpcError:
                errors += 1
                await asyncio.sleep(0.01)   # an unreachable server fails at once: do not spin
                continue
            if t >= start:
                out.append((time.perf_counter() - t) * 1000)
    return errors


async def _rest_worker(spec: dict[str, Any], until: float, start: float, out: list[float]) -> int:
    errors = 0
    url = f"http://127.0.0.1:{spec['port']}{spec['path']}"
    async with aiohttp.ClientSession(headers=dict(spec["headers"])) as session:
        while (t := time.perf_counter()) < until:
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as r:
                    await r.read()
                    ok = r.status == 200
            except (aiohttp.ClientError, OSError, TimeoutError):
                ok = False
                await asyncio.sleep(0.01)   # a refused connection fails at once: do not spin
            if not ok:
                errors += 1
            elif t >= start:
                out.append((time.perf_counter() - t) * 1000)
    return errors


async def run(spec: dict[str, Any], concurrency: int, duration_s: float, warmup_s: float) -> dict[str, Any]:
    start = time.perf_counter() + warmup_s
    until = start + duration_s
    latencies: list[float] = []
    worker = _grpc_worker if spec["protocol"] == "grpc" else _rest_worker
    errors = await asyncio.gather(*(worker(spec, until, start, latencies) for _ in range(concurrency)))
    return {"latencies_ms": latencies, "errors": sum(errors)}


def main() -> None:
    spec = json.loads(sys.argv[1])
    import uvloop

    result = uvloop.run(run(spec, int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
