"""A key that cannot sign is a clear, logged refusal: nothing signed, the server goes on."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from adapters.keys.pkcs11 import KeyUnavailable
from adapters.stores.audit_checkpoints import StoreCheckpointSigner
from adapters.stores.audit_memory import InMemoryAuditLog
from gateway.application.audit import periodic
from gateway.application.receipts import ReceiptSigner
from gateway.core.errors import GatewayError, Reason
from gateway.core.types import AuditRecord, EventKind, Outcome

UNREACHABLE = "PKCS#11 token 'passerelle': signing with 'passerelle-checkpoint' failed: DeviceRemoved"


class UnreachableNoteKey:
    """A ``NoteSigner`` whose token has gone away."""

    name = "passerelle.test/audit"
    public_key = bytes(32)
    is_demo = False

    def sign(self, message: bytes) -> bytes:
        raise KeyUnavailable(UNREACHABLE)


class UnreachableReceiptKey:
    """A ``ReceiptKey`` whose token has gone away."""

    is_demo = False

    @property
    def public_jwk(self) -> dict[str, str]:
        return {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "k1", "alg": "ES256", "use": "sig"}

    def sign(self, signing_input: bytes) -> bytes:
        raise KeyUnavailable(UNREACHABLE.replace("checkpoint", "receipt"))


def test_an_unsignable_receipt_is_an_internal_error_that_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    signer = ReceiptSigner(UnreachableReceiptKey(), issuer="urn:test")
    with caplog.at_level(logging.ERROR, logger="passerelle.keys"), pytest.raises(GatewayError) as caught:
        signer.sign({"consentReceiptID": "cns_1"})
    assert caught.value.reason == Reason.INTERNAL and "could not be signed" in str(caught.value)
    assert "consent receipt not signed" in caplog.text and "passerelle-receipt" in caplog.text


async def test_an_unsignable_checkpoint_is_not_stored_and_the_periodic_signer_keeps_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InMemoryAuditLog()
    await store.append(
        AuditRecord(
            1, EventKind.ADMIN, "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", (), Outcome.OK, "", 0, "admin"
        )
    )
    signer = StoreCheckpointSigner(store, UnreachableNoteKey(), clock_us=lambda: 1)
    with pytest.raises(KeyUnavailable, match="DeviceRemoved"):
        await signer.checkpoint()
    assert await store.checkpoints() == []
    with caplog.at_level(logging.ERROR, logger="passerelle.audit"):
        task = asyncio.create_task(periodic("checkpoint", 0.01, signer.checkpoint))
        await asyncio.sleep(0.1)
        assert not task.done()  # refusals are logged; the loop (and the server) goes on
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert caplog.text.count("DeviceRemoved") >= 2 and await store.checkpoints() == []
