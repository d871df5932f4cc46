"""File signing keys: demo mode only, two separate keys in a folder of their own."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError
from typer.testing import CliRunner

from adapters.keys.signing import key_kind, make_receipt_key
from gateway.application.receipts import ReceiptSigner, verify_receipt
from gateway.config import ConfigError, KeysSection, load_config
from gateway.demo.setup import ensure_demo
from gateway.entrypoints.cli import app


def without_demo_keys(data_dir: Path) -> Path:
    path = ensure_demo(data_dir)
    text = path.read_text()
    assert text.count("[gateway.keys]\ndemo = true\n") == 1, "the demo configuration changed shape"
    out = data_dir / "production.toml"
    out.write_text(text.replace("[gateway.keys]\ndemo = true\n", "[gateway.keys]\n"))
    return out


def test_the_demo_keeps_its_checkpoint_and_receipt_keys_apart_from_the_log_and_from_each_other(tmp_path: Path) -> None:
    config = load_config(ensure_demo(tmp_path))
    keys = config.gateway.keys
    checkpoint_file, receipt_file = config.path(keys.checkpoint_file), config.path(keys.receipt_file)
    audit_folder = config.path(config.gateway.audit.removeprefix("sqlite:")).parent
    assert checkpoint_file.parent == receipt_file.parent == tmp_path / "demo-signing-keys"
    assert checkpoint_file.parent not in (audit_folder, tmp_path / "keys") and checkpoint_file != receipt_file
    checkpoint = serialization.load_pem_private_key(checkpoint_file.read_bytes(), password=None)
    assert isinstance(checkpoint, Ed25519PrivateKey)
    raw = checkpoint.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    receipt_key = make_receipt_key(config)
    assert receipt_key.public_jwk["crv"] == "P-256" and raw.hex() not in repr(receipt_key.public_jwk)
    assert (checkpoint_file.stat().st_mode & 0o077, receipt_file.stat().st_mode & 0o077) == (0, 0)


def test_the_demo_receipt_key_signs_verifiable_receipts_and_says_it_is_a_demo_key(tmp_path: Path) -> None:
    key = make_receipt_key(load_config(ensure_demo(tmp_path)))
    signer = ReceiptSigner(key, issuer="urn:test")
    assert verify_receipt(signer.sign({"consentReceiptID": "cns_1"}), signer.jwks())["consentReceiptID"] == "cns_1"
    assert key_kind(key) == "demo-file-key"


def test_a_file_key_outside_demo_mode_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gateway\.keys: the file key 'demo-signing-keys/checkpoint-ed25519\.pem'"):
        load_config(without_demo_keys(tmp_path))


def test_serve_refuses_a_file_key_outside_demo_mode_with_exit_code_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--config", str(without_demo_keys(tmp_path))])
    assert result.exit_code == 2 and "allowed only in demo mode" in result.output


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"module": "/lib/p11.so", "pin_env": "PIN"}, "token_label"),
        ({"module": "/lib/p11.so", "token_label": "t"}, "pin_file or pin_env"),
        ({"module": "/lib/p11.so", "token_label": "t", "pin_env": "PIN", "receipt_key_label": "passerelle-checkpoint"},
         "separate keys"),
    ],
)
def test_a_token_configuration_is_complete_and_names_two_keys(settings: dict[str, str], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        KeysSection.model_validate(settings)
