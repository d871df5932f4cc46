"""The quota heartbeat board in PostgreSQL: one row per live gateway process.

``beat`` upserts this process's row (``seen`` and its per-consumer demand) and
reads every row seen within ``ttl_s``, all on the server's clock
(``clock_timestamp()``), so hosts' clocks need not agree. Rows silent for a
minute are deleted. One round trip per heartbeat per process, none per exchange.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from adapters.stores._pg_sync import ThreadedPg

__all__ = ["MIGRATIONS", "PostgresQuotaBoard"]

T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {s}.quota_members (
        process text PRIMARY KEY,
        joined timestamptz NOT NULL DEFAULT clock_timestamp(),
        seen timestamptz NOT NULL DEFAULT clock_timestamp(),
        demand jsonb NOT NULL DEFAULT '{}'
    );
    """,
)


class PostgresQuotaBoard:
    """``QuotaBoard`` over PostgreSQL (psycopg 3; one connection used from a worker thread)."""

    def __init__(self, dsn: str, *, schema: str = "passerelle_quotas", ttl_s: float = 2.5) -> None:
        self._db = ThreadedPg(dsn, schema, MIGRATIONS, connect_timeout=2)
        self.dsn, self.schema, self.ttl_s = dsn, self._db.schema, ttl_s
        self._run = self._db.run

    async def beat(self, process: str, demand: Mapping[str, float]) -> dict[str, dict[str, float]]:
        s = self.schema

        def beat(conn: psycopg.Connection[Any]) -> dict[str, dict[str, float]]:
            conn.execute(
                f"INSERT INTO {s}.quota_members (process, demand) VALUES (%s, %s) ON CONFLICT (process) "
                "DO UPDATE SET seen = clock_timestamp(), demand = EXCLUDED.demand".encode(),
                (process, Jsonb(dict(demand))),
            )
            rows = conn.execute(
                f"SELECT process, demand FROM {s}.quota_members "
                "WHERE seen > clock_timestamp() - make_interval(secs => %s)".encode(),
                (self.ttl_s,),
            ).fetchall()
            conn.execute(f"DELETE FROM {s}.quota_members WHERE seen < clock_timestamp() - interval '1 minute'".encode())
            return {p: {c: float(v) for c, v in d.items()} for p, d in rows}

        result: dict[str, dict[str, float]] = await self._run(beat)
        return result

    async def leave(self, process: str) -> None:
        sql = f"DELETE FROM {self.schema}.quota_members WHERE process = %s".encode()
        await self._run(lambda c: c.execute(sql, (process,)))

    async def close(self) -> None:
        await asyncio.to_thread(self._db.close)
