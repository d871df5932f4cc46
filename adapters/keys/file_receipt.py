"""The demo receipt key: a P-256 private key in a PEM file (demo mode only; production uses ``pkcs11``)."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from adapters.keys._ec import p256_jwk

__all__ = ["FileReceiptKey"]


class FileReceiptKey:
    """``ReceiptKey`` over a PEM file: raw r || s signatures for JWS ES256."""

    def __init__(self, private_key_pem: bytes, *, is_demo: bool = True) -> None:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("the receipt key must be an EC P-256 (ES256) key")
        self._key = key
        numbers = key.public_key().public_numbers()
        self._jwk = p256_jwk(numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big"))
        self._is_demo = is_demo

    @property
    def public_jwk(self) -> dict[str, str]:
        return dict(self._jwk)

    @property
    def is_demo(self) -> bool:
        return self._is_demo

    def sign(self, signing_input: bytes) -> bytes:
        r, s = decode_dss_signature(self._key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
