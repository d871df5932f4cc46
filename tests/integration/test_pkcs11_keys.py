"""Signing keys in a PKCS#11 token (SoftHSM2): signatures verify, private keys never leave the token."""

from __future__ import annotations

import threading
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pkcs11 import Attribute, KeyType, ObjectClass
from typer.testing import CliRunner

from adapters.keys.pkcs11 import (
    KeyUnavailable,
    Pkcs11NoteSigner,
    Pkcs11ReceiptKey,
    Pkcs11Token,
    TokenSettings,
    shared_token,
)
from gateway.application.receipts import ReceiptSigner, verify_receipt
from gateway.entrypoints.cli import app
from tests.softhsm import CHECKPOINT_LABEL, RECEIPT_LABEL, SoftHsm, require_softhsm, softhsm_token

ORIGIN = "passerelle.test/audit"


@pytest.fixture
def softhsm() -> SoftHsm:
    require_softhsm()
    return softhsm_token()


def note_signer(hsm: SoftHsm) -> Pkcs11NoteSigner:
    return Pkcs11NoteSigner(shared_token(hsm.settings()), CHECKPOINT_LABEL, name=ORIGIN)  # type: ignore[arg-type]


def receipt_key(hsm: SoftHsm) -> Pkcs11ReceiptKey:
    return Pkcs11ReceiptKey(shared_token(hsm.settings()), RECEIPT_LABEL)  # type: ignore[arg-type]


def test_a_checkpoint_signed_in_the_token_verifies_with_the_published_public_key(softhsm: SoftHsm) -> None:
    signer = note_signer(softhsm)
    checkpoint = f"{ORIGIN}\n42\n{'A' * 43}=\n".encode()
    signature = signer.sign(checkpoint)
    assert (signer.public_key, len(signature), signer.is_demo) == (softhsm.checkpoint_public, 64, False)
    Ed25519PublicKey.from_public_bytes(signer.public_key).verify(signature, checkpoint)  # raises if wrong


def test_a_receipt_signed_in_the_token_verifies_with_the_published_jwks(softhsm: SoftHsm) -> None:
    signer = ReceiptSigner(receipt_key(softhsm), issuer="urn:test")
    token = signer.sign({"iss": "urn:test", "consentReceiptID": "cns_1", "language": "fr", "purpose": "Études"})
    claims = verify_receipt(token, signer.jwks())
    assert (claims["consentReceiptID"], claims["purpose"], signer.is_demo) == ("cns_1", "Études", False)


def test_checkpoints_and_receipts_are_signed_with_different_keys(softhsm: SoftHsm) -> None:
    jwk = receipt_key(softhsm).public_jwk
    assert softhsm.receipt_public[1:33] != note_signer(softhsm).public_key
    assert (jwk["kty"], jwk["crv"]) == ("EC", "P-256")


@pytest.mark.parametrize(("label", "key_type"), [(CHECKPOINT_LABEL, KeyType.EC_EDWARDS), (RECEIPT_LABEL, KeyType.EC)])
def test_the_private_keys_cannot_be_read_or_exported(softhsm: SoftHsm, label: str, key_type: KeyType) -> None:
    def attempt(session: object) -> None:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=key_type, label=label)  # type: ignore[attr-defined]
        assert (key[Attribute.SENSITIVE], key[Attribute.EXTRACTABLE]) == (True, False)
        assert key[Attribute.NEVER_EXTRACTABLE] is True  # generated in the token, never extractable since
        with pytest.raises(pkcs11.AttributeSensitive):
            key[Attribute.VALUE]  # reading the private value is the attempted export
        with pytest.raises(pkcs11.PKCS11Error):
            key[Attribute.EXTRACTABLE] = True

    shared_token(softhsm.settings()).run("export attempt", attempt)  # type: ignore[arg-type]


def test_one_token_signs_from_many_threads_at_once(softhsm: SoftHsm) -> None:
    signer = note_signer(softhsm)
    public = Ed25519PublicKey.from_public_bytes(signer.public_key)
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                message = f"thread {n} message {i}".encode()
                public.verify(signer.sign(message), message)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []


def test_a_key_missing_from_the_token_is_a_clear_error(softhsm: SoftHsm) -> None:
    with pytest.raises(KeyUnavailable, match="no-such-key"):
        Pkcs11NoteSigner(shared_token(softhsm.settings()), "no-such-key", name=ORIGIN)  # type: ignore[arg-type]


def test_an_unreachable_token_is_key_unavailable_naming_it_and_not_the_pin(softhsm: SoftHsm) -> None:
    token = Pkcs11Token(TokenSettings(softhsm.module, "no-such-token", "secret-pin-1234"))
    with pytest.raises(KeyUnavailable) as caught:
        token.run("signing", lambda session: None)
    assert "no-such-token" in str(caught.value) and "secret-pin-1234" not in str(caught.value)


def test_init_pkcs11_generates_both_keys_prints_them_and_refuses_to_overwrite(softhsm: SoftHsm, tmp_path: Path) -> None:
    args = ["security", "init-pkcs11", "--module", softhsm.module, "--token-label", softhsm.token_label,
            "--pin-file", str(softhsm.pin_file), "--checkpoint-label", "cli-checkpoint",
            "--receipt-label", "cli-receipt"]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "BEGIN PUBLIC KEY" in first.stdout and '"crv": "P-256"' in first.stdout
    signer = Pkcs11NoteSigner(shared_token(softhsm.settings()), "cli-checkpoint", name=ORIGIN)  # type: ignore[arg-type]
    message = b"signed by the key the command made"
    Ed25519PublicKey.from_public_bytes(signer.public_key).verify(signer.sign(message), message)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "already holds" in again.output
