"""DPoP proofs already used, in PostgreSQL: shared by every gateway process (and pod) on one server.

Same behaviour as ``SqliteProofReplayStore``: ``INSERT ... ON CONFLICT DO UPDATE ... WHERE
expired`` is atomic, so of two processes racing on one proof exactly one records it. The table
is ``UNLOGGED`` (a crash empties it: only proofs still fresh could then be replayed, for their
remaining seconds) and purged of expired rows at most every ``purge_every_s`` seconds.
"""

from __future__ import annotations

from typing import Any

import psycopg

from adapters.stores._pg_sync import ThreadedPg

__all__ = ["MIGRATIONS", "PostgresProofReplayStore"]

# Each step is formatted with {s}, the schema name (checked by ThreadedPg).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE UNLOGGED TABLE {s}.dpop_replay (key text PRIMARY KEY, expires_at double precision NOT NULL);
    CREATE INDEX dpop_replay_expiry ON {s}.dpop_replay (expires_at);
    """,
)


class PostgresProofReplayStore:
    """``ProofReplayStore`` over PostgreSQL (psycopg 3; one connection used from a worker thread)."""

    def __init__(self, dsn: str, *, schema: str = "passerelle_dpop_replay", purge_every_s: float = 10.0) -> None:
        self._db = ThreadedPg(dsn, schema, MIGRATIONS, connect_timeout=5)
        self.schema = self._db.schema
        self._purge_every_s, self._last_purge = purge_every_s, 0.0

    async def first_use(self, key: str, expires_at: float, now: float) -> bool:
        s, purge = self.schema, now - self._last_purge >= self._purge_every_s
        if purge:
            self._last_purge = now

        def first_use(conn: psycopg.Connection[Any]) -> bool:
            if purge:
                conn.execute(f"DELETE FROM {s}.dpop_replay WHERE expires_at <= %s".encode(), (now,))
            cur = conn.execute(
                f"INSERT INTO {s}.dpop_replay (key, expires_at) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
                f"SET expires_at = EXCLUDED.expires_at WHERE {s}.dpop_replay.expires_at <= %s".encode(),
                (key, expires_at, now),
            )
            return cur.rowcount == 1

        return await self._db.run(first_use)

    async def close(self) -> None:
        self._db.close()
