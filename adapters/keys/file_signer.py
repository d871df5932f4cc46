"""An Ed25519 note signer from a PEM file (demo mode only), and the one factory for the checkpoint key.

``FileNoteSigner`` implements ``gateway.core.ports.NoteSigner``: C2SP signed-note
signatures (RFC 8032 Ed25519) for checkpoints and for a witness's cosignatures.
A file key can be read by whoever can read the file: outside demo mode the
checkpoint key lives in a PKCS#11 token (``[gateway.keys] module``), which
``make_checkpoint_signer`` is the single place to pick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["FileNoteSigner", "generate_ed25519_pem", "make_checkpoint_signer", "public_key_pem"]


class FileNoteSigner:
    """An Ed25519 private key read from a PKCS#8 PEM file; ``name`` is its C2SP key name."""

    def __init__(self, name: str, pem: bytes, *, is_demo: bool = True) -> None:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError(f"the note key {name!r} must be an Ed25519 key (PKCS#8 PEM)")
        self._key = key
        self._name = name
        self._is_demo = is_demo
        self._public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @classmethod
    def from_file(cls, name: str, path: Path, *, is_demo: bool = True) -> FileNoteSigner:
        """Raises ``OSError`` if the file cannot be read, ``TypeError`` if it is not an Ed25519 key."""
        return cls(name, path.read_bytes(), is_demo=is_demo)

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public

    @property
    def is_demo(self) -> bool:
        return self._is_demo

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)


def generate_ed25519_pem() -> bytes:
    """A new Ed25519 private key as unencrypted PKCS#8 PEM (write it with mode 0600)."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(raw: bytes) -> bytes:
    """A raw Ed25519 public key as SubjectPublicKeyInfo PEM."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(raw)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def make_checkpoint_signer(config: Any) -> Any:
    """The ``NoteSigner`` that signs the log's checkpoints, named by ``[gateway] log_origin``.

    A PKCS#11 token when ``[gateway.keys] module`` is set, else the demo file key
    ``[gateway.keys] checkpoint_file`` (refused outside demo mode by the configuration check).
    Raises ``OSError``/``TypeError`` when the key cannot be loaded.
    """
    keys = config.gateway.keys
    if keys.uses_token:  # the Ed25519 key in the token (adapters.keys.pkcs11); raises KeyUnavailable (OSError)
        from adapters.keys.signing import pkcs11_checkpoint_signer

        return pkcs11_checkpoint_signer(config, config.gateway.log_origin)
    return FileNoteSigner.from_file(config.gateway.log_origin, config.path(keys.checkpoint_file), is_demo=True)
