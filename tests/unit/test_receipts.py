"""Consent receipts: signed with the gateway key, verifiable with the published JWKS, tamper-evident."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from adapters.keys.file_receipt import FileReceiptKey
from consent import Consent, Purpose
from gateway.application.receipts import ReceiptError, ReceiptSigner, receipt_claims, verify_receipt
from gateway.entrypoints.cli import app


def pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def receipt(signer: ReceiptSigner) -> str:
    c = Consent(
        "cns_1",
        "pseudo",
        "cedies",
        "student-aid",
        frozenset({"INCOME"}),
        granted_us=1_767_225_600_000_000,
        expires_us=1_798_761_600_000_000,
    )
    purpose = Purpose(
        "student-aid", {"fr": "Aide", "de": "Beihilfe", "en": "Aid"}, {}, "Loi", "https://x.invalid", 3650
    )
    return signer.sign(
        receipt_claims(
            c,
            purpose,
            issuer="urn:test",
            consumer_name="CEDIES",
            legal_basis="A6-1-a",
            legal_reference="art. 6",
            services=["svc/Get"],
            language="en",
        )
    )


def test_receipt_verifies_and_carries_kantara_and_27560_fields() -> None:
    signer = ReceiptSigner(FileReceiptKey(pem()), issuer="urn:test")
    claims = verify_receipt(receipt(signer), signer.jwks())
    assert claims["consentReceiptID"] == "cns_1" and claims["piiPrincipalId"] == "pseudo"
    assert claims["services"][0]["purposes"][0]["piiCategory"] == ["INCOME"]
    assert (claims["retentionDays"], claims["lawfulBasis"]["code"]) == (3650, "A6-1-a")
    assert claims["validity"]["until"] == "2027-01-01T00:00:00Z"


@pytest.mark.parametrize("part", [0, 1, 2])
def test_changing_one_byte_anywhere_breaks_the_receipt(part: int) -> None:
    signer = ReceiptSigner(FileReceiptKey(pem()), issuer="urn:test")
    pieces = receipt(signer).split(".")
    s = pieces[part]
    pieces[part] = s[:5] + ("B" if s[5] != "B" else "C") + s[6:]
    with pytest.raises(ReceiptError):
        verify_receipt(".".join(pieces), signer.jwks())


def test_a_receipt_from_another_key_does_not_verify() -> None:
    with pytest.raises(ReceiptError):
        verify_receipt(receipt(ReceiptSigner(FileReceiptKey(pem()), issuer="urn:test")),
                       ReceiptSigner(FileReceiptKey(pem()), issuer="x").jwks())


def test_cli_verifies_a_receipt_file_and_rejects_a_tampered_one(tmp_path: Path) -> None:
    signer = ReceiptSigner(FileReceiptKey(pem()), issuer="urn:test")
    (tmp_path / "jwks.json").write_text(json.dumps(signer.jwks()))
    token = receipt(signer)
    (tmp_path / "record.json").write_text(json.dumps({"id": "cns_1", "receipt": token}))
    (tmp_path / "bad.jws").write_text(token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"))
    runner = CliRunner()
    ok = runner.invoke(
        app, ["consent", "verify-receipt", str(tmp_path / "record.json"), "--jwks", str(tmp_path / "jwks.json")]
    )
    assert ok.exit_code == 0 and '"consentReceiptID": "cns_1"' in ok.stdout
    bad = runner.invoke(
        app, ["consent", "verify-receipt", str(tmp_path / "bad.jws"), "--jwks", str(tmp_path / "jwks.json")]
    )
    assert bad.exit_code == 1
