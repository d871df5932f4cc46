"""Reading what the report needs: exchange rows, manual submissions, consent revocations.

Read-only connections; rows are streamed in pages through the time index, so a
yearly log of millions of exchanges needs no more memory than a page.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from observability.report import ExchangeRow, Period

__all__ = ["AuditSource", "consent_revocations"]

_COLUMNS = "time_us, consumer, service, purpose, legal_basis, case_id, outcome, reason, latency_us, ai_system"
_PAGE = 20_000


class AuditSource:
    """The exchange log in SQLite (``sqlite:PATH``) or PostgreSQL (a DSN; ``schema`` as the store's)."""

    def __init__(self, target: str, resolve: Callable[[str], Path], *, schema: str = "passerelle_audit") -> None:
        self._postgres = target.startswith(("postgresql://", "postgres://"))
        self._target = target if self._postgres else str(resolve(target.removeprefix("sqlite:")))
        self._table = f"{schema}.audit_log" if self._postgres else "audit_log"
        self._param = "%s" if self._postgres else "?"

    def _connect(self) -> Any:
        if self._postgres:
            import psycopg

            return psycopg.connect(self._target, connect_timeout=10)
        if not Path(self._target).exists():
            raise FileNotFoundError(f"no exchange log at {self._target}")
        return sqlite3.connect(f"file:{self._target}?mode=ro", uri=True)

    def _where(self) -> str:
        p = self._param
        return f"kind = 'exchange' AND time_us >= {p} AND time_us < {p}"

    def count(self, period: Period) -> int:
        with closing(self._connect()) as conn:
            sql = f"SELECT COUNT(*) FROM {self._table} WHERE {self._where()}"
            return int(conn.execute(sql, (period.since_us, period.until_us)).fetchone()[0])

    def rows(self, period: Period) -> Iterator[ExchangeRow]:
        """Exchange rows of the period, oldest first."""
        sql = f"SELECT {_COLUMNS} FROM {self._table} WHERE {self._where()} ORDER BY time_us"
        with closing(self._connect()) as conn:
            cursor = conn.cursor()
            cursor.execute(sql, (period.since_us, period.until_us))
            while page := cursor.fetchmany(_PAGE):
                for row in page:
                    yield ExchangeRow(*row)


_REVOKED_SQL = "SELECT consumer, COUNT(*) FROM {t} WHERE revoked_us >= {p} AND revoked_us < {p} GROUP BY consumer"


def consent_revocations_at(
    target: str, resolve: Callable[[str], Path], period: Period, *, schema: str = "passerelle_consent"
) -> dict[str, int]:
    """Consents revoked during the period, per consumer, from the configured consent store (read only)."""
    if target.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(target, autocommit=True) as conn:
            try:
                rows = conn.execute(
                    _REVOKED_SQL.format(t=f"{schema}.consents", p="%s"), (period.since_us, period.until_us)
                ).fetchall()
            except psycopg.errors.UndefinedTable:  # no consent was ever stored
                return {}
        return {consumer: int(n) for consumer, n in rows}
    return consent_revocations(resolve(target.removeprefix("sqlite:")), period)


def consent_revocations(consents: Path, period: Period) -> dict[str, int]:
    """Consents revoked during the period, per consumer (read-only on the consent store's file)."""
    if not consents.exists():
        return {}
    with closing(sqlite3.connect(f"file:{consents}?mode=ro", uri=True)) as conn:
        try:
            rows = conn.execute(
                _REVOKED_SQL.format(t="consents", p="?"), (period.since_us, period.until_us)
            ).fetchall()
        except sqlite3.OperationalError:  # no consent was ever stored
            return {}
    return {consumer: int(n) for consumer, n in rows}
