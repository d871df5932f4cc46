"""Which consent and mandate stores ``[gateway] consents`` names: a SQLite file or a PostgreSQL DSN.

``consents = "sqlite:consents.db"`` (the default) keeps both in that file;
``consents = "postgresql://…"`` keeps both in the schema ``passerelle_consent`` of
that database, shared by every gateway process and pod pointed at it. The audit
target is independent: pointing it at PostgreSQL does not move the consents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.stores.consent_cache import FullConsentStore
    from adapters.stores.mandate_live import MandateStore
    from gateway.config import Config

__all__ = ["consent_store_for", "is_postgres", "mandate_store_for"]


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def consent_store_for(config: Config) -> FullConsentStore:
    target = config.gateway.consents
    if is_postgres(target):
        from adapters.stores.consent_postgres import PostgresConsentStore

        return PostgresConsentStore(target)
    from adapters.stores.consent_sqlite import SqliteConsentStore

    return SqliteConsentStore(config.path(target.removeprefix("sqlite:")))


def mandate_store_for(config: Config) -> MandateStore:
    target = config.gateway.consents
    if is_postgres(target):
        from adapters.stores.mandate_postgres import PostgresMandateStore

        return PostgresMandateStore(target)
    from adapters.stores.mandate_sqlite import SqliteMandateStore

    return SqliteMandateStore(config.path(target.removeprefix("sqlite:")))
