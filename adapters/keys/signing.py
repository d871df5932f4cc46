"""The signing keys a configuration asks for: a PKCS#11 token, or (demo mode only) files.

``make_receipt_key`` picks the consent-receipt key; ``make_checkpoint_signer``
(``adapters.keys.file_signer``) picks the checkpoint key and calls ``pkcs11_checkpoint_signer``
here for a token. ``key_kind`` is what ``/readyz`` reports. The configuration check that
refuses file keys outside demo mode is ``gateway.config.signing_keys_problem``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gateway.core.ports import NoteSigner, ReceiptKey

__all__ = ["key_kind", "make_receipt_key", "pkcs11_checkpoint_signer", "read_pin", "token_settings"]


def read_pin(pin_file: str, pin_env: str, base: Path) -> str:
    """The token's user PIN from the environment variable ``pin_env`` or the file ``pin_file`` (relative
    to ``base``); never logged."""
    if pin_env:
        pin = os.environ.get(pin_env)
        if pin is None:
            raise OSError(f"gateway.keys.pin_env: the environment variable {pin_env!r} is not set")
        return pin
    path = Path(pin_file)
    return (path if path.is_absolute() else base / path).read_text().strip()


def token_settings(config: Any) -> Any:
    from adapters.keys.pkcs11 import TokenSettings

    keys = config.gateway.keys
    return TokenSettings(keys.module, keys.token_label, read_pin(keys.pin_file, keys.pin_env, config.base_dir))


def pkcs11_checkpoint_signer(config: Any, name: str) -> NoteSigner:
    """The Ed25519 checkpoint key in the configured token, as a ``NoteSigner`` named ``name``."""
    from adapters.keys.pkcs11 import Pkcs11NoteSigner, shared_token

    token = shared_token(token_settings(config))
    return Pkcs11NoteSigner(token, config.gateway.keys.checkpoint_key_label, name=name)


def make_receipt_key(config: Any) -> ReceiptKey:
    """The consent-receipt key: the token's P-256 key, or the demo file ``[gateway.keys] receipt_file``."""
    keys = config.gateway.keys
    if keys.uses_token:
        from adapters.keys.pkcs11 import Pkcs11ReceiptKey, shared_token

        return Pkcs11ReceiptKey(shared_token(token_settings(config)), keys.receipt_key_label)
    from adapters.keys.file_receipt import FileReceiptKey

    return FileReceiptKey(config.path(keys.receipt_file).read_bytes(), is_demo=True)


def key_kind(key: NoteSigner | ReceiptKey) -> str:
    """``"demo-file-key"`` or ``"pkcs11"``, as ``/readyz`` reports it."""
    return "demo-file-key" if key.is_demo else "pkcs11"
