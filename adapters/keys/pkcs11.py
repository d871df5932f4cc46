"""Signing keys in a PKCS#11 token (an HSM; SoftHSM2 in tests): the private keys never leave it.

- ``Pkcs11NoteSigner``: the Ed25519 key that signs checkpoints (C2SP signed notes), ``CKM_EDDSA``.
- ``Pkcs11ReceiptKey``: the P-256 key that signs consent receipts (JWS ES256), ``CKM_ECDSA`` over SHA-256.
- ``generate_signing_keys``: both key pairs, generated inside the token as sensitive and non-extractable.

One logged-in session per token is shared by the signers and serialised by a lock: PKCS#11
sessions must not be used by two threads at once. A failed operation closes the session, so the
next call opens a new one (a restarted HSM, a lost network HSM); the failure itself is raised as
``KeyUnavailable`` (an ``OSError``, as the ports say), whose message names the token and key and
never the PIN.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from adapters.keys._ec import p256_jwk

__all__ = [
    "ED25519_OID",
    "KeyUnavailable",
    "Pkcs11NoteSigner",
    "Pkcs11ReceiptKey",
    "Pkcs11Token",
    "TokenSettings",
    "generate_signing_keys",
    "shared_token",
]

ED25519_OID = "1.3.101.112"  # RFC 8410
_P256 = "secp256r1"
_T = TypeVar("_T")
#: Private keys: usable for signing only, never readable (CKA_SENSITIVE), never exportable (CKA_EXTRACTABLE).
_PRIVATE = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.PRIVATE: True, Attribute.SIGN: True}


class KeyUnavailable(OSError):
    """The token or a key in it cannot be reached or used: nothing was signed."""


@dataclass(frozen=True, slots=True)
class TokenSettings:
    module: str  # the PKCS#11 library (.so)
    token_label: str
    pin: str


class Pkcs11Token:
    """One PKCS#11 token: a lazily opened, logged-in session, one operation at a time."""

    def __init__(self, settings: TokenSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._session: Any = None

    @property
    def label(self) -> str:
        return self._settings.token_label

    def run(self, what: str, operation: Callable[[Any], _T]) -> _T:
        """``operation(session)`` under the lock; any PKCS#11 failure becomes ``KeyUnavailable``.

        A failure on an existing session is tried once more on a new one (the token may have been
        restarted, or logged out by another session of this process).
        """
        with self._lock:
            for attempt in (1, 2):
                fresh = self._session is None
                try:
                    if fresh:
                        self._session = _login(self._settings, rw=False)
                    return operation(self._session)
                except KeyUnavailable:
                    raise
                except (pkcs11.PKCS11Error, OSError) as exc:
                    self._drop()
                    if fresh or attempt == 2:
                        raise KeyUnavailable(f"PKCS#11 token {self.label!r}: {what} failed: {_describe(exc)}") from None
            raise AssertionError("unreachable")

    def _drop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(Exception):  # already broken: nothing more to learn from it
                session.close()

    def close(self) -> None:
        with self._lock:
            self._drop()


_TOKENS: dict[TokenSettings, Pkcs11Token] = {}
_TOKENS_LOCK = threading.Lock()


def shared_token(settings: TokenSettings) -> Pkcs11Token:
    """One ``Pkcs11Token`` per token and process: PKCS#11 login state is per process, and closing
    one logged-in session logs every session of the process out."""
    with _TOKENS_LOCK:
        token = _TOKENS.get(settings)
        if token is None:
            token = _TOKENS[settings] = Pkcs11Token(settings)
        return token


def _login(settings: TokenSettings, *, rw: bool) -> Any:
    """A session logged in as the user. PKCS#11 login is per process: when another session of
    this process is logged in already, the new session shares that login (and its close does not
    log the others out)."""
    token = pkcs11.lib(settings.module).get_token(token_label=settings.token_label)
    try:
        return token.open(rw=rw, user_pin=settings.pin)
    except pkcs11.UserAlreadyLoggedIn:
        return token.open(rw=rw)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__} {exc}".strip() if str(exc) else type(exc).__name__


def _private_key(session: Any, label: str, key_type: KeyType) -> Any:
    try:
        return session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=key_type, label=label)
    except pkcs11.NoSuchKey:
        raise KeyUnavailable(f"no {key_type.name} private key labelled {label!r} in the token") from None


def _public_point(session: Any, label: str, key_type: KeyType) -> bytes:
    """The public key's CKA_EC_POINT, unwrapped from its DER OCTET STRING when the token wraps it."""
    try:
        key = session.get_key(object_class=ObjectClass.PUBLIC_KEY, key_type=key_type, label=label)
    except pkcs11.NoSuchKey:
        raise KeyUnavailable(f"no {key_type.name} public key labelled {label!r} in the token") from None
    point: bytes = key[Attribute.EC_POINT]
    if point[:1] == b"\x04" and len(point) in (34, 67) and point[1] == len(point) - 2:  # DER OCTET STRING
        return bytes(point[2:])
    return bytes(point)


class Pkcs11NoteSigner:
    """``NoteSigner`` over an Ed25519 key pair in a token (checkpoints and their C2SP signed notes)."""

    def __init__(self, token: Pkcs11Token, label: str, *, name: str) -> None:
        self._token, self._label, self._name = token, label, name
        point = token.run(f"reading public key {label!r}", lambda s: _public_point(s, label, KeyType.EC_EDWARDS))
        if len(point) != 32:
            raise KeyUnavailable(f"key {label!r} in token {token.label!r} is not an Ed25519 key")
        self._public = point

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        return self._public

    @property
    def is_demo(self) -> bool:
        return False

    def sign(self, message: bytes) -> bytes:
        def sign(session: Any) -> bytes:
            key = _private_key(session, self._label, KeyType.EC_EDWARDS)
            return bytes(key.sign(message, mechanism=Mechanism.EDDSA))

        return self._token.run(f"signing with {self._label!r}", sign)


class Pkcs11ReceiptKey:
    """``ReceiptKey`` over a P-256 key pair in a token: raw r || s signatures for JWS ES256."""

    def __init__(self, token: Pkcs11Token, label: str) -> None:
        self._token, self._label = token, label
        point = token.run(f"reading public key {label!r}", lambda s: _public_point(s, label, KeyType.EC))
        if len(point) != 65 or point[0] != 4:
            raise KeyUnavailable(f"key {label!r} in token {token.label!r} is not an uncompressed P-256 key")
        self._jwk = p256_jwk(point[1:33], point[33:])

    @property
    def public_jwk(self) -> dict[str, str]:
        return dict(self._jwk)

    @property
    def is_demo(self) -> bool:
        return False

    def sign(self, signing_input: bytes) -> bytes:
        digest = hashlib.sha256(signing_input).digest()  # CKM_ECDSA signs a hash; SoftHSM2 lacks CKM_ECDSA_SHA256

        def sign(session: Any) -> bytes:
            return bytes(_private_key(session, self._label, KeyType.EC).sign(digest, mechanism=Mechanism.ECDSA))

        return self._token.run(f"signing with {self._label!r}", sign)


def generate_signing_keys(settings: TokenSettings, checkpoint_label: str, receipt_label: str) -> tuple[bytes, bytes]:
    """Generate the Ed25519 checkpoint key and the P-256 receipt key in the token; return their public points.

    Refuses to overwrite: a label already present in the token is an error.
    """
    if checkpoint_label == receipt_label:
        raise ValueError("checkpoints and receipts need separate keys: give two labels")
    with _login(settings, rw=True) as session:
        for label in (checkpoint_label, receipt_label):
            if list(session.get_objects({Attribute.LABEL: label})):
                raise ValueError(f"the token already holds objects labelled {label!r}")
        _generate(session, KeyType.EC_EDWARDS, ED25519_OID, checkpoint_label)
        _generate(session, KeyType.EC, _P256, receipt_label)
        return (_public_point(session, checkpoint_label, KeyType.EC_EDWARDS),
                _public_point(session, receipt_label, KeyType.EC))


def _generate(session: Any, key_type: KeyType, curve: str, label: str) -> None:
    params = session.create_domain_parameters(
        key_type, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True
    )
    params.generate_keypair(store=True, label=label, private_template=dict(_PRIVATE),
                            public_template={Attribute.VERIFY: True})
