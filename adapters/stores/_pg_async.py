"""What the async PostgreSQL stores share: a lazily opened pool and ordered, locked migrations.

A store opens its pool on first use (inside the running loop, as psycopg_pool
requires) and brings its schema up to date there: each component (``consents``,
``mandates``) has its own ordered steps, recorded in ``{schema}.schema_version``
under a transaction-scoped advisory lock, so that many processes starting at once
apply each step exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeAlias

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from adapters.stores._pg_sync import check_schema

__all__ = ["LazyPool", "Pool", "check_schema_name", "migrate"]

#: Autocommit connections with the default row factory: rows are tuples.
Pool: TypeAlias = AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]

check_schema_name = check_schema  # one rule for every PostgreSQL store


async def migrate(conn: psycopg.AsyncConnection[Any], schema: str, component: str, steps: Sequence[str]) -> int:
    """Apply the steps of ``component`` not yet applied (each formatted with {s}); return the version."""
    s = schema
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"passerelle-migrate:{s}",))
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}".encode())
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.schema_version "
            "(component text NOT NULL, version int NOT NULL, PRIMARY KEY (component, version))".encode()
        )
        cur = await conn.execute(
            f"SELECT COALESCE(MAX(version), 0) FROM {s}.schema_version WHERE component = %s".encode(), (component,)
        )
        row = await cur.fetchone()
        done = int(row[0]) if row else 0
        for version, step in enumerate(steps[done:], start=done + 1):
            await conn.execute(step.replace("{s}", s).encode())
            await conn.execute(f"INSERT INTO {s}.schema_version VALUES (%s, %s)".encode(), (component, version))
    return len(steps)


class LazyPool:
    """An ``AsyncConnectionPool`` (autocommit connections) opened and migrated on first use."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        component: str,
        steps: Sequence[str],
        *,
        min_size: int,
        max_size: int,
        timeout_s: float = 2.0,
    ) -> None:
        self.dsn = dsn
        self.schema = check_schema_name(schema)
        self._component = component
        self._steps = tuple(steps)
        self._sizes = (min_size, max_size)
        self._timeout_s = timeout_s  # waiting for a connection; then the caller gets a refusal, not a hang
        self._pool: Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def get(self) -> Pool:
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                self._pool = await self._open()
        return self._pool

    async def _open(self) -> Pool:
        pool: Pool = AsyncConnectionPool(
            self.dsn,
            min_size=self._sizes[0],
            max_size=self._sizes[1],
            kwargs={"autocommit": True},
            name=f"{self.schema}.{self._component}",
            timeout=self._timeout_s,
            open=False,
        )
        await pool.open(wait=True, timeout=self._timeout_s)
        try:
            async with pool.connection() as conn:
                await migrate(conn, self.schema, self._component, self._steps)
        except BaseException:
            await pool.close()
            raise
        return pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
