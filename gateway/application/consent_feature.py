"""The consent-and-purpose feature on a built gateway (its stores and keys chosen by ``gateway.bootstrap_consent``).

- the pipeline's policy becomes the live snapshot (configured mandates + run-time changes);
- ``ConsentService``, ``MandateAdmin`` and ``AccessCheck`` are served on both doors;
- ``/readyz`` says where the signing keys are: ``"signing": {"checkpoint": ..., "receipt": ...}``,
  each ``"pkcs11"`` or ``"demo-file-key"``; the receipt key (its own key, never the checkpoint key)
  is published at ``/.well-known/jwks.json`` by the front door (``gateway.entrypoints.routes_keys``).

Run-time mandate changes live in the consents database (table ``mandate_overrides``; SQLite or PostgreSQL),
so every instance that shares the consents store shares the mandates too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.application.access_checks import access_check_binding
from gateway.application.admin import mandate_admin_binding
from gateway.application.consents import consent_binding
from gateway.application.receipts import ReceiptSigner
from gateway.application.runtime import Gateway
from gateway.core.ports import LiveMandates

__all__ = ["install_consent_and_purpose"]


async def install_consent_and_purpose(
    gateway: Gateway, live: LiveMandates, signer: ReceiptSigner, signing: dict[str, str], clock_us: Callable[[], int]
) -> None:
    """``live``: the configured mandates with run-time changes; ``signing``: where each signing key is."""
    await live.start()
    gateway.pipeline.policy = live.current
    gateway.closers.append(live.close)

    async def signing_report() -> dict[str, Any]:
        return {"signing": signing}

    gateway.readiness.append(signing_report)
    gateway.bindings += [
        consent_binding(gateway, signer, clock_us),
        mandate_admin_binding(gateway, live, clock_us),
        access_check_binding(gateway, clock_us),
    ]
