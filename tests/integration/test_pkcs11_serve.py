"""End to end: ``gateway serve`` with its signing keys in a SoftHSM2 token signs checkpoints and receipts there."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.bootstrap import build_gateway
from gateway.config import load_config
from gateway.demo.setup import ensure_demo
from tests.gateway_process import GatewayProcess, agency_headers, demo_registries, start_gateway_process, write_config
from tests.softhsm import SoftHsm, keys_section, require_softhsm, softhsm_token

DEMO_KEYS = "[gateway.keys]\ndemo = true\n"


@pytest.fixture
def softhsm() -> SoftHsm:
    require_softhsm()
    return softhsm_token()


@pytest.fixture
def served(softhsm: SoftHsm, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway process whose [gateway.keys] name the token instead of the demo files (removed)."""
    with demo_registries() as (grpc_port, tax_port):
        path = write_config(tmp_path, grpc_port, tax_port, checkpoint_interval_s=0.3)
        text = path.read_text()
        assert text.count(DEMO_KEYS) == 1, "the demo configuration changed shape"
        custodian = tmp_path / "custodian" / "checkpoint-signer-state.json"  # the key custodian's, not the DBA's
        demo_state = 'signer_state = "demo-signing-keys/checkpoint-signer-state.json"'
        path.write_text(text.replace(DEMO_KEYS, keys_section(softhsm)).replace(demo_state,
                                                                                f'signer_state = "{custodian}"'))
        for demo_key in (tmp_path / "demo-signing-keys").iterdir():
            demo_key.unlink()  # nothing to fall back on: the token signs or nothing does
        gateway = start_gateway_process(["--config", str(path)], tmp_path / "gateway.log")
        try:
            yield gateway
        finally:
            gateway.stop()


def signed_note(base_url: str, min_size: int) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = httpx.get(f"{base_url}/v1/audit/checkpoint", timeout=5)
        if r.status_code == 200 and int(r.text.split("\n")[1]) >= min_size:
            return r.text
        time.sleep(0.1)
    raise AssertionError("no checkpoint covering the exchange was signed")


def ed25519_verifies(note: str, public_key: bytes) -> bool:
    """C2SP signed note: the text up to the blank line, then '— name base64(key id[4] || signature)' lines."""
    text, _, signatures = note.partition("\n\n")
    for line in signatures.splitlines():
        blob = base64.b64decode(line.split(" ")[-1])
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(blob[4:], (text + "\n").encode())
            return True
        except Exception:
            continue
    return False


def test_serve_signs_checkpoints_in_the_token_and_readyz_says_so(served: GatewayProcess, softhsm: SoftHsm,
                                                                  tmp_path: Path) -> None:
    ready = httpx.get(f"{served.base_url}/readyz", timeout=5).json()
    assert ready["signing"] == {"checkpoint": "pkcs11", "receipt": "pkcs11"}
    exchange = httpx.get(f"{served.base_url}/v1/population/persons/1991062434054", timeout=10,
                         headers=agency_headers(tmp_path, "pkcs11-e2e"))
    assert exchange.status_code in (200, 404), exchange.text  # recorded either way
    note = signed_note(served.base_url, 1)
    assert ed25519_verifies(note, softhsm.checkpoint_public)


def test_serve_publishes_the_token_receipt_key_not_the_checkpoint_key(served: GatewayProcess,
                                                                      softhsm: SoftHsm) -> None:
    jwks = httpx.get(f"{served.base_url}/.well-known/jwks.json", timeout=5).json()
    x = base64.urlsafe_b64decode(jwks["keys"][0]["x"] + "==")
    assert x == softhsm.receipt_public[1:33] and x != softhsm.checkpoint_public


async def test_the_demo_reports_its_file_keys_as_demo_keys(tmp_path: Path) -> None:
    gateway = await build_gateway(load_config(ensure_demo(tmp_path)))
    try:
        assert (await gateway.ready())["signing"] == {"checkpoint": "demo-file-key", "receipt": "demo-file-key"}
    finally:
        await gateway.close()
