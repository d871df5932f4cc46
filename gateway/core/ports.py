"""Small interfaces between the pipeline and the edges (stores, registries, keys)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from consent.model import Consent
from gateway.core.types import AuditReceipt, AuditRecord, ExchangeTiming, StoredAuditRecord

__all__ = [
    "AuditLog",
    "AuditQuery",
    "AuditReader",
    "ConsentStore",
    "ExchangeObserver",
    "NoteSigner",
    "ProofReplayStore",
    "ReceiptKey",
    "RegistryAdapter",
    "SecurityEvents",
]


class AuditLog(Protocol):
    """Append-only exchange log. There is no update and no delete."""

    async def append(self, record: AuditRecord) -> AuditReceipt:
        """Return only once the record is durably committed; raise ``AuditUnavailable`` otherwise."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AuditQuery:
    subject: str | None = None  # pseudonym
    consumer: str | None = None
    purpose: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    after_seq: int = 0
    limit: int = 100


class AuditReader(Protocol):
    async def query(self, q: AuditQuery) -> Sequence[StoredAuditRecord]: ...


class RegistryAdapter(Protocol):
    """Calls one registry operation. Raises ``GatewayError`` with a registry reason on failure."""

    async def call(
        self, method: str, request: Message, *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> Message: ...

    async def close(self) -> None: ...


class ConsentStore(Protocol):
    """Consents as the pipeline needs them: candidates for one lookup, and atomic spending."""

    async def for_subject(self, subject: str, consumer: str, purpose: str) -> Sequence[Consent]: ...

    async def spend(self, consent_id: str, now_us: int) -> bool:
        """Mark a one-exchange consent used; False if it was already used (atomic)."""
        ...


class SecurityEvents(Protocol):
    """Refusals before the caller is authenticated: counted and logged, rate-limited."""

    def record(self, reason: str, protocol: str, detail: str = "") -> None: ...


class ProofReplayStore(Protocol):
    """DPoP proofs already used, shared by every gateway process on the same store (SQLite file, PostgreSQL).

    A key is kept until its ``expires_at`` (epoch seconds; the proof is refused as too old after
    it), so the store holds at most the proofs of one acceptance window.
    """

    async def first_use(self, key: str, expires_at: float, now: float) -> bool:
        """Record ``key`` unless an unexpired record exists (atomic across processes); True when recorded."""
        ...

    async def close(self) -> None: ...


class ExchangeObserver(Protocol):
    """Telemetry hook called once per exchange by an authenticated consumer."""

    def on_exchange(self, record: AuditRecord, provider: str, timing: ExchangeTiming) -> None: ...


class NoteSigner(Protocol):
    """An Ed25519 key that signs C2SP signed notes (checkpoints, cosignatures).

    Implementations: a file key (demo mode only, in a folder of its own) and a
    PKCS#11 token (python-pkcs11; SoftHSM2 in tests), whose private key never
    leaves the token. ``name`` is the C2SP key name (e.g. ``passerelle.example/audit``);
    the C2SP key id is derived from ``name`` and ``public_key`` by the note code.
    """

    @property
    def name(self) -> str: ...

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key (RFC 8032)."""
        ...

    @property
    def is_demo(self) -> bool:
        """True for a file key (demo mode): reported by ``/readyz``."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``; raises ``OSError`` if the key is unreachable."""
        ...


class ReceiptKey(Protocol):
    """The ES256 (P-256) key that signs consent receipts: never the checkpoint key.

    ``sign`` returns the raw JWS signature (r || s, 64 bytes, RFC 7518 §3.4) of the
    signing input; ``public_jwk`` is the public key as a JWK (RFC 7517) with its ``kid``.
    """

    @property
    def public_jwk(self) -> dict[str, str]: ...

    @property
    def is_demo(self) -> bool: ...

    def sign(self, signing_input: bytes) -> bytes: ...
