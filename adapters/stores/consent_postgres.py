"""Consents in PostgreSQL: one consent state for every gateway process and pod on the database.

Same API and behaviour as ``SqliteConsentStore``. Revoking and spending are each
one ``UPDATE … WHERE <still allowed> RETURNING id``: PostgreSQL re-checks the
condition on the row's latest version after waiting for a concurrent writer, so
of any number of concurrent spends of a one-exchange consent, on any number of
processes, exactly one gets a row back.

Queries run on a small ``psycopg_pool.AsyncConnectionPool`` (the event loop is
never blocked; statements are prepared by psycopg after a few uses). A read that
fails on a connection broken by a server restart is retried once on a fresh one;
writes are not retried (an unanswered spend is refused, never repeated). When the
server cannot be reached the store raises ``GatewayError(INTERNAL)``: the exchange
is refused with a reason on both doors, and audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from consent.model import Consent
from gateway.core.errors import GatewayError, Reason

from ._pg_async import LazyPool

__all__ = ["MIGRATIONS", "PostgresConsentStore"]

# Each step is formatted with {s}, the schema name.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {s}.consents (
        id text PRIMARY KEY, subject text NOT NULL, consumer text NOT NULL, purpose text NOT NULL,
        categories text[] NOT NULL, granted_us bigint NOT NULL, expires_us bigint NOT NULL,
        single_use boolean NOT NULL, revoked_us bigint NOT NULL DEFAULT 0, used_us bigint NOT NULL DEFAULT 0,
        extra jsonb NOT NULL DEFAULT '{}', procedure_id text NOT NULL DEFAULT ''
    );
    CREATE INDEX consents_lookup ON {s}.consents (subject, consumer, purpose);
    CREATE INDEX consents_subject_granted ON {s}.consents (subject, granted_us DESC);
    """,
)
_COLUMNS = (
    "id, subject, consumer, purpose, categories, granted_us, expires_us, single_use, revoked_us, used_us, extra, "
    "procedure_id"
)


def _consent(r: Sequence[Any]) -> Consent:
    return Consent(
        id=r[0],
        subject=r[1],
        consumer=r[2],
        purpose=r[3],
        categories=frozenset(r[4]),
        granted_us=r[5],
        expires_us=r[6],
        single_use=r[7],
        revoked_us=r[8],
        used_us=r[9],
        extra=r[10],
        procedure_id=r[11],
    )


class PostgresConsentStore:
    """``FullConsentStore`` over PostgreSQL (psycopg 3, async), tables in ``schema``."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "passerelle_consent",
        min_size: int = 1,
        max_size: int = 8,
        timeout_s: float = 2.0,
    ) -> None:
        self._pool = LazyPool(
            dsn, schema, "consents", MIGRATIONS, min_size=min_size, max_size=max_size, timeout_s=timeout_s
        )
        t = f"{self._pool.schema}.consents"
        self._sql = {
            "for_subject": f"SELECT {_COLUMNS} FROM {t} WHERE subject = %s AND consumer = %s AND purpose = %s",
            "of_subject": f"SELECT {_COLUMNS} FROM {t} WHERE subject = %s ORDER BY granted_us DESC",
            "get": f"SELECT {_COLUMNS} FROM {t} WHERE id = %s",
            "add": f"INSERT INTO {t} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            "revoke": f"UPDATE {t} SET revoked_us = %s WHERE id = %s AND subject = %s AND revoked_us = 0 RETURNING id",
            "spend": f"UPDATE {t} SET used_us = %s WHERE id = %s AND (NOT single_use OR used_us = 0) RETURNING id",
        }

    @property
    def schema(self) -> str:
        return self._pool.schema

    async def _run(self, name: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        pool = await self._pool.get()
        async with pool.connection() as conn:
            cur = await conn.execute(self._sql[name].encode(), params)
            return await cur.fetchall() if cur.description else []

    async def _query(self, name: str, params: Sequence[Any], *, retry: bool = False) -> list[tuple[Any, ...]]:
        try:
            try:
                return await self._run(name, params)
            except psycopg.OperationalError as exc:  # the pool drops a broken connection; reads retry once
                if not retry or isinstance(exc, PoolTimeout):
                    raise
                return await self._run(name, params)
        except psycopg.OperationalError as exc:  # includes the pool's timeout: fail closed, with a reason
            raise GatewayError(Reason.INTERNAL, "The consent store is unavailable") from exc

    async def _read(self, name: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return await self._query(name, params, retry=True)

    async def for_subject(self, subject: str, consumer: str, purpose: str) -> Sequence[Consent]:
        return [_consent(r) for r in await self._read("for_subject", (subject, consumer, purpose))]

    async def of_subject(self, subject: str) -> Sequence[Consent]:
        return [_consent(r) for r in await self._read("of_subject", (subject,))]

    async def get(self, consent_id: str) -> Consent | None:
        rows = await self._read("get", (consent_id,))
        return _consent(rows[0]) if rows else None

    async def add(self, c: Consent) -> None:
        await self._query(
            "add",
            (
                c.id,
                c.subject,
                c.consumer,
                c.purpose,
                sorted(c.categories),
                c.granted_us,
                c.expires_us,
                c.single_use,
                c.revoked_us,
                c.used_us,
                Jsonb(c.extra),
                c.procedure_id,
            ),
        )

    async def revoke(self, consent_id: str, subject: str, now_us: int) -> bool:
        return len(await self._query("revoke", (now_us, consent_id, subject))) == 1

    async def spend(self, consent_id: str, now_us: int) -> bool:
        return len(await self._query("spend", (now_us, consent_id))) == 1

    async def close(self) -> None:
        await self._pool.close()
