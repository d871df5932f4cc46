"""Cost of signing a checkpoint on a large log: full tree head vs the incremental tree.

    python -m bench.audit_checkpoint_bench [N]     # default 200000 records, SQLite
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from adapters.keys.file_signer import FileNoteSigner, generate_ed25519_pem
from adapters.stores.audit_checkpoints import StoreCheckpointSigner
from adapters.stores.audit_sqlite import SqliteAuditLog
from bench.audit_bench import _record


async def _run(n: int, step: int = 1000) -> dict[str, float]:
    key = FileNoteSigner("bench.example/audit", generate_ed25519_pem())
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteAuditLog(Path(tmp) / "audit.db")
        await store.start()
        try:
            for start in range(0, n, 4096):
                await asyncio.gather(*(store.append(_record(i)) for i in range(start, min(n, start + 4096))))
            signer = StoreCheckpointSigner(store, key, clock_us=lambda: time.time_ns() // 1000)
            t = time.perf_counter()
            await signer.checkpoint()
            first = time.perf_counter() - t
            await asyncio.gather(*(store.append(_record(n + i)) for i in range(step)))
            t = time.perf_counter()
            await signer.checkpoint()
            incremental = time.perf_counter() - t
            t = time.perf_counter()
            await store.tree_head()
            full = time.perf_counter() - t
        finally:
            await store.close()
    return {"records": n, "first_checkpoint_s": round(first, 3),
            f"next_checkpoint_after_{step}_s": round(incremental, 4), "store_tree_head_s": round(full, 3)}


def main() -> None:
    print(asyncio.run(_run(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)))


if __name__ == "__main__":
    main()
