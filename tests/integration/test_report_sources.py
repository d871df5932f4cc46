"""The report counts consent revocations from whichever consent store is configured."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters.stores.consent_postgres import PostgresConsentStore
from adapters.stores.consent_sqlite import SqliteConsentStore
from consent import Consent
from observability.report import Period
from observability.report_source import consent_revocations_at

PERIOD = Period(1_000, 2_000)


async def _fill(store: object) -> None:
    for n, (consumer, revoked) in enumerate(
        [("cedies", 1_500), ("cedies", 1_999), ("cnap", 1_200), ("cnap", 2_500), ("cnap", 0)]
    ):
        await store.add(Consent(f"c{n}", "s", consumer, "p", granted_us=10))  # type: ignore[attr-defined]
        if revoked:
            assert await store.revoke(f"c{n}", "s", revoked)  # type: ignore[attr-defined]


async def test_revocations_from_sqlite(tmp_path: Path) -> None:
    store = SqliteConsentStore(tmp_path / "consents.db")
    await _fill(store)
    await store.close()
    assert consent_revocations_at("sqlite:consents.db", lambda p: tmp_path / p, PERIOD) == {"cedies": 2, "cnap": 1}


@pytest.mark.postgres
async def test_revocations_from_postgres(pg_schema: str) -> None:
    dsn = os.environ.get("PASSERELLE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
    store = PostgresConsentStore(dsn, schema=pg_schema)
    await _fill(store)
    await store.close()
    counts = consent_revocations_at(dsn, lambda p: Path(p), PERIOD, schema=pg_schema)
    assert counts == {"cedies": 2, "cnap": 1}
