"""A demo gateway in its own process, for tests that need two instances on one data folder.

``python -m tests.e2e.gateway_process DATA_DIR GRPC_PORT TAX_PORT`` prints
``READY rest=N grpc=M`` once serving, and stops cleanly on SIGTERM or when its
standard input closes (so it never outlives the test that started it).
"""

from __future__ import annotations

import asyncio
import io
import signal
import sys
from pathlib import Path

from gateway.bootstrap import resolve_demo_addresses
from gateway.config import load_config
from gateway.demo.setup import ensure_demo
from gateway.entrypoints.server import start_gateway


async def main(data_dir: Path, grpc_port: int, tax_port: int) -> None:
    config = resolve_demo_addresses(load_config(ensure_demo(data_dir)), grpc_port, tax_port)
    running = await start_gateway(config, rest_port=0, grpc_port=0)
    print(f"READY rest={running.rest_port} grpc={running.grpc_port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stdin = sys.stdin.buffer
    assert isinstance(stdin, io.BufferedReader)  # the parent's pipe; typeshed types it as a plain BinaryIO
    loop.add_reader(stdin.fileno(), lambda: stop.set() if not stdin.read1(1) else None)
    await stop.wait()
    await running.stop(1.0)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
