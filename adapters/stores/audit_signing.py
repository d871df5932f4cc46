"""Ed25519 note signatures on audit checkpoints (C2SP signed-note, tlog-checkpoint).

The signature is over the checkpoint's note text (origin, tree size, base64
root); the key id is ``SHA-256(origin || 0x0A || 0x01 || public key)[:4]``, the
log's key name being its origin.
"""

from __future__ import annotations

from dataclasses import replace

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.core.merkle import Checkpoint, checkpoint_payload
from gateway.core.ports import NoteSigner
from gateway.core.signed_note import ed25519_ok, key_id

__all__ = ["raw_public_key", "sign_checkpoint", "verify_checkpoint"]


def raw_public_key(key: bytes | Ed25519PublicKey) -> bytes:
    """The raw 32 bytes of an Ed25519 public key given raw, as PEM, or as a key object.

    Raises ``TypeError`` for a PEM that is not an Ed25519 key, ``ValueError`` for unreadable bytes.
    """
    if isinstance(key, Ed25519PublicKey):
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if len(key) == 32:
        return key
    loaded = serialization.load_pem_public_key(key)
    if not isinstance(loaded, Ed25519PublicKey):
        raise TypeError("the checkpoint key must be an Ed25519 key")
    return raw_public_key(loaded)


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> Checkpoint:
    """Return ``cp`` signed by ``signer``, whose name becomes the checkpoint's origin."""
    cp = replace(cp, origin=signer.name, key_id=key_id(signer.name, signer.public_key).hex())
    return replace(cp, signature=signer.sign(checkpoint_payload(cp)))


def verify_checkpoint(cp: Checkpoint, public_key: bytes | Ed25519PublicKey) -> bool:
    """Does ``cp`` carry a valid signature, under the right key id, by ``public_key`` (raw, PEM or object)?"""
    raw = raw_public_key(public_key)
    if cp.key_id != key_id(cp.origin, raw).hex() or len(cp.signature) != 64:
        return False
    return ed25519_ok(raw, checkpoint_payload(cp), cp.signature)
