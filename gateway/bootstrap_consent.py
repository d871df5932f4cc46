"""Composition of the consent feature: which consent and mandate stores ``[gateway] consents`` names
(a SQLite file or a PostgreSQL DSN), the receipt key, and the feature's wiring.

``consents = "sqlite:consents.db"`` (the default) keeps both in that file;
``consents = "postgresql://…"`` keeps both in the schema ``passerelle_consent`` of
that database, shared by every gateway process and pod pointed at it. The audit
target is independent: pointing it at PostgreSQL does not move the consents.
"""

from __future__ import annotations

from adapters.keys.signing import key_kind, make_receipt_key
from adapters.stores.consent_cache import FullConsentStore
from adapters.stores.mandate_live import LivePolicy, MandateStore
from gateway.application.consent_feature import install_consent_and_purpose
from gateway.application.receipts import ReceiptSigner
from gateway.application.runtime import Gateway
from gateway.config import Config
from gateway.core.clock import now_us
from gateway.entrypoints.routes_keys import jwks_installer

__all__ = ["consent_store_for", "install_consent_feature", "is_postgres", "mandate_store_for"]


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


async def install_consent_feature(gateway: Gateway) -> None:
    """Live mandates, consents with signed receipts, access checks, and the receipt key's JWKS."""
    conf = gateway.config.gateway
    configured = gateway.pipeline.policy()
    live = LivePolicy(configured.purposes.values(), configured.mandates, mandate_store_for(gateway.config))
    receipt_key = make_receipt_key(gateway.config)
    signer = ReceiptSigner(receipt_key, issuer=conf.audience)
    # The checkpoint key is chosen by the same [gateway.keys] rule (make_checkpoint_signer): a token if configured.
    signing = {"checkpoint": "pkcs11" if conf.keys.uses_token else "demo-file-key", "receipt": key_kind(receipt_key)}
    await install_consent_and_purpose(gateway, live, signer, signing, now_us)
    gateway.rest_installers.append(jwks_installer(signer))
