"""The demo deployment: keys, configuration and tokens in a data folder (default ``./.gateway-demo``).

Idempotent: existing keys and configuration are kept, so tokens printed earlier
stay valid across restarts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from adapters.keys.file_signer import FileNoteSigner
from adapters.stores.audit_signer_state import SignerStateFile, StateRecord
from adapters.stores.audit_signing import sign_checkpoint
from gateway.core.merkle import EMPTY_ROOT, Checkpoint
from gateway.demo._files import write_private as _write_private
from gateway.demo.pki import ensure_demo_pki

__all__ = ["DEMO_AUDIENCE", "DEMO_ISSUERS", "demo_token", "ensure_demo", "key_id"]

DEMO_AUDIENCE = "urn:passerelle:gateway"
#: issuer id -> (iss URL, role)
DEMO_ISSUERS = {
    "demo-agencies": ("https://idp.demo.passerelle.invalid/agencies", "agency"),
    "demo-citizens": ("https://eid.demo.passerelle.invalid/citizens", "citizen"),
    "demo-staff": ("https://idp.demo.passerelle.invalid/staff", "staff"),
}
CONFIG_NAME = "gateway.toml"


def key_id(public_jwk: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint (EC keys), base64url."""
    canonical = json.dumps({k: public_jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def _ec_key(keys: Path, name: str) -> None:
    pem, jwks = keys / f"{name}.pem", keys / f"{name}.jwks.json"
    if pem.exists() and jwks.exists():
        return
    private = ec.generate_private_key(ec.SECP256R1())
    _write_private(pem, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    public.update({"kid": key_id(public), "use": "sig", "alg": "ES256"})
    jwks.write_text(json.dumps({"keys": [public]}, indent=2))


def _demo_signing_keys(folder: Path) -> None:
    """The demo's two signing keys, in a folder of their own: Ed25519 (checkpoints), P-256 (receipts)."""
    pkcs8 = serialization.PrivateFormat.PKCS8
    for name, generate in (("checkpoint-ed25519.pem", ed25519.Ed25519PrivateKey.generate),
                           ("receipt-p256.pem", lambda: ec.generate_private_key(ec.SECP256R1()))):
        if not (folder / name).exists():
            key = generate()
            _write_private(folder / name, key.private_bytes(serialization.Encoding.PEM, pkcs8,
                                                            serialization.NoEncryption()))
            if name.startswith("checkpoint"):
                _new_signer_state(folder / name, folder / "checkpoint-signer-state.json")


#: ``[gateway] log_origin`` of the demo configuration (its default).
DEMO_LOG_ORIGIN = "passerelle.demo/audit"


def _new_signer_state(key_file: Path, state_file: Path) -> None:
    """A new checkpoint key has signed nothing yet: its state is the empty tree, born with the key."""
    signer = FileNoteSigner(DEMO_LOG_ORIGIN, key_file.read_bytes())
    empty = sign_checkpoint(Checkpoint(0, EMPTY_ROOT, time.time_ns() // 1000), signer)
    SignerStateFile(state_file).save(StateRecord(empty))


def ensure_demo(data_dir: Path) -> Path:
    """Create keys and configuration if missing; return the configuration file's path."""
    keys = data_dir / "keys"
    for name in DEMO_ISSUERS:   # the identity providers; the gateway's own keys: demo-signing-keys/
        _ec_key(keys, name)
    pseudonym = keys / "pseudonym.key"
    if not pseudonym.exists():
        _write_private(pseudonym, secrets.token_bytes(32))
    ensure_demo_pki(keys)   # CA, server and per-consumer client certificates (gRPC mutual TLS)
    _demo_signing_keys(data_dir / "demo-signing-keys")   # not in keys/, and never beside the audit log
    config = data_dir / CONFIG_NAME
    if not config.exists():
        template = (Path(__file__).parent / "gateway.demo.toml").read_text()
        config.write_text(template)
    return config


def _signing_key(data_dir: Path, issuer_id: str) -> tuple[object, str]:
    keys = data_dir / "keys"
    private = serialization.load_pem_private_key((keys / f"{issuer_id}.pem").read_bytes(), password=None)
    kid = json.loads((keys / f"{issuer_id}.jwks.json").read_text())["keys"][0]["kid"]
    return private, kid


def demo_token(
    data_dir: Path, *, issuer_id: str, subject: str, scope: str = "", ttl_s: int = 900,
    extra: dict[str, object] | None = None,
) -> str:
    """A token from one of the demo identity providers (ES256, 15 minutes by default)."""
    ensure_demo(data_dir)
    private, kid = _signing_key(data_dir, issuer_id)
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": DEMO_ISSUERS[issuer_id][0], "aud": DEMO_AUDIENCE, "sub": subject,
        "iat": now, "nbf": now, "exp": now + ttl_s, "jti": uuid.uuid4().hex,
    }
    if scope:
        claims["scope"] = scope
    claims.update(extra or {})
    return jwt.encode(claims, private, algorithm="ES256", headers={"kid": kid})  # type: ignore[arg-type]
