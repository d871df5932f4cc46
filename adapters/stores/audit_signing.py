"""ES256 signatures on audit checkpoints with the gateway key (``cryptography``)."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.merkle import Checkpoint, checkpoint_signature_ok, sign_checkpoint_with

__all__ = ["sign_checkpoint", "verify_checkpoint"]

_ES256 = ec.ECDSA(hashes.SHA256())


def sign_checkpoint(cp: Checkpoint, private_key_pem: bytes) -> Checkpoint:
    """Return ``cp`` signed (DER ECDSA P-256/SHA-256) with the PEM private key."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("the checkpoint key must be an EC (ES256) key")
    return sign_checkpoint_with(cp, lambda payload: key.sign(payload, _ES256))


def verify_checkpoint(cp: Checkpoint, public_key: ec.EllipticCurvePublicKey | bytes) -> bool:
    """Does ``cp`` carry a valid signature by ``public_key`` (object or PEM)?"""
    key = serialization.load_pem_public_key(public_key) if isinstance(public_key, bytes) else public_key
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise TypeError("the checkpoint key must be an EC (ES256) key")

    def check(payload: bytes, signature: bytes) -> bool:
        try:
            key.verify(signature, payload, _ES256)
        except InvalidSignature:
            return False
        return True

    return checkpoint_signature_ok(cp, check)
