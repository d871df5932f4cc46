"""Wiring of the consent-and-purpose feature onto a built gateway (one FEATURES entry in bootstrap).

- the pipeline's policy becomes the live snapshot (configured mandates + run-time changes);
- ``ConsentService``, ``MandateAdmin`` and ``AccessCheck`` are served on both doors;
- the receipt key (its own key, never the checkpoint key) is published at ``/.well-known/jwks.json``,
  and ``/readyz`` says where the signing keys are: ``"signing": {"checkpoint": ..., "receipt": ...}``,
  each ``"pkcs11"`` or ``"demo-file-key"``.

Run-time mandate changes live in the consents database (table ``mandate_overrides``; SQLite or PostgreSQL),
so every instance that shares the consents store shares the mandates too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from adapters.keys.signing import key_kind, make_receipt_key
from adapters.stores.mandate_live import LivePolicy
from gateway.bootstrap_consent import mandate_store_for
from gateway.entrypoints.services.access_checks import access_check_binding
from gateway.entrypoints.services.admin import mandate_admin_binding
from gateway.entrypoints.services.consents import consent_binding
from gateway.entrypoints.services.receipts import ReceiptSigner, jwks_installer

if TYPE_CHECKING:
    from gateway.bootstrap import Gateway

__all__ = ["install_consent_and_purpose"]


async def install_consent_and_purpose(gateway: Gateway, clock_us: Callable[[], int]) -> LivePolicy:
    conf = gateway.config.gateway
    configured = gateway.pipeline.policy()
    store = mandate_store_for(gateway.config)
    live = LivePolicy(configured.purposes.values(), configured.mandates, store)
    await live.start()
    gateway.pipeline.policy = live.current
    gateway.closers.append(live.close)
    receipt_key = make_receipt_key(gateway.config)
    signer = ReceiptSigner(receipt_key, issuer=conf.audience)
    # The checkpoint key is chosen by the same [gateway.keys] rule (make_checkpoint_signer): a token if configured.
    signing = {"checkpoint": "pkcs11" if conf.keys.uses_token else "demo-file-key", "receipt": key_kind(receipt_key)}

    async def signing_report() -> dict[str, Any]:
        return {"signing": signing}

    gateway.readiness.append(signing_report)
    gateway.bindings += [
        consent_binding(gateway, signer, clock_us),
        mandate_admin_binding(gateway, live, clock_us),
        access_check_binding(gateway, clock_us),
    ]
    gateway.rest_installers.append(jwks_installer(signer))
    return live
