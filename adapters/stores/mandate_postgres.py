"""Run-time mandate changes in PostgreSQL, next to the consents: shared by every gateway on the database.

Same API and behaviour as ``SqliteMandateStore``: each row overrides the
configured mandate with the same id (``doc`` NULL is a deletion), and
``mandate_generation`` counts changes so that ``LivePolicy`` on other instances
sees, with one cheap read per poll, that it must reload. A change and its
generation bump commit together; the generation row lock serialises writers.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from adapters.stores.mandate_memory import MandateOverride

from ._pg_async import LazyPool

__all__ = ["MIGRATIONS", "PostgresMandateStore"]

# Each step is formatted with {s}, the schema name.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {s}.mandate_overrides (
        id text PRIMARY KEY, doc jsonb, updated_us bigint NOT NULL, updated_by text NOT NULL
    );
    CREATE TABLE {s}.mandate_generation (id int PRIMARY KEY CHECK (id = 1), gen bigint NOT NULL);
    INSERT INTO {s}.mandate_generation VALUES (1, 0);
    """,
)


class PostgresMandateStore:
    """``MandateStore`` over PostgreSQL (psycopg 3, async), tables in ``schema``."""

    def __init__(self, dsn: str, *, schema: str = "passerelle_consent", max_size: int = 2) -> None:
        self._pool = LazyPool(dsn, schema, "mandates", MIGRATIONS, min_size=1, max_size=max_size)
        s = self._pool.schema
        self._generation = f"SELECT gen FROM {s}.mandate_generation WHERE id = 1".encode()
        # One statement, one snapshot: the generation and the rows it counts.
        self._overrides = (
            f"SELECT g.gen, o.id, o.doc, o.updated_us, o.updated_by FROM {s}.mandate_generation g "
            f"LEFT JOIN {s}.mandate_overrides o ON true WHERE g.id = 1"
        ).encode()
        self._upsert = (
            f"INSERT INTO {s}.mandate_overrides (id, doc, updated_us, updated_by) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated_us = excluded.updated_us, "
            "updated_by = excluded.updated_by"
        ).encode()
        self._bump = f"UPDATE {s}.mandate_generation SET gen = gen + 1 WHERE id = 1 RETURNING gen".encode()

    @property
    def schema(self) -> str:
        return self._pool.schema

    async def _rows(self, sql: bytes) -> list[tuple[Any, ...]]:
        pool = await self._pool.get()
        async with pool.connection() as conn:
            return await (await conn.execute(sql)).fetchall()

    async def _read(self, sql: bytes) -> list[tuple[Any, ...]]:
        try:
            return await self._rows(sql)
        except psycopg.OperationalError:  # the pool drops the broken connection; one retry on a fresh one
            return await self._rows(sql)

    async def generation(self) -> int:
        return int((await self._read(self._generation))[0][0])

    async def overrides(self) -> tuple[int, list[MandateOverride]]:
        rows = await self._read(self._overrides)
        found = [MandateOverride(r[1], r[2], r[3], r[4]) for r in rows if r[1] is not None]
        return int(rows[0][0]), found

    async def put(self, mandate_id: str, doc: dict[str, Any] | None, updated_us: int, updated_by: str) -> int:
        pool = await self._pool.get()
        async with pool.connection() as conn, conn.transaction():
            value = Jsonb(doc) if doc is not None else None
            await conn.execute(self._upsert, (mandate_id, value, updated_us, updated_by))
            row = await (await conn.execute(self._bump)).fetchone()
        assert row is not None
        return int(row[0])

    async def close(self) -> None:
        await self._pool.close()
