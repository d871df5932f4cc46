"""Small interfaces between the core or the application layer and the edges (stores, registries, keys).

Each is implemented in ``adapters/`` (or ``observability/`` for telemetry hooks) and handed to the
features by the composition root (``gateway/bootstrap*.py``) through the running parts
(``gateway.application.runtime.Gateway``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from consent.model import Consent, Mandate
from consent.policy import Policy
from gateway.core.audit_proof import InclusionProof
from gateway.core.merkle import Checkpoint
from gateway.core.signed_note import Cosignature
from gateway.core.types import AuditReceipt, AuditRecord, ExchangeTiming, MandateEntry, StoredAuditRecord

__all__ = [
    "AuditLog",
    "AuditQuery",
    "AuditReader",
    "AuditStore",
    "CheckpointSigner",
    "ConsentRecords",
    "ConsentStore",
    "CosignatureCollector",
    "CountedSecurityEvents",
    "ExchangeObserver",
    "LiveMandates",
    "NoteSigner",
    "ProofBuilder",
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


class AuditStore(AuditLog, AuditReader, Protocol):
    """The exchange log as the running gateway uses it: append and read, its signed checkpoints, retention.

    Implementations: ``adapters.stores.audit_sqlite``, ``audit_postgres``, ``audit_memory``. Still no
    update: ``purge_before`` drops whole records past retention, after a checkpoint covers them.
    """

    async def start(self) -> None: ...

    async def healthy(self) -> bool: ...

    async def get(self, seq: int) -> StoredAuditRecord | None: ...

    async def chain_head(self) -> tuple[int, str]: ...

    async def checkpoints(self) -> list[Checkpoint]: ...

    async def latest_checkpoint(self) -> Checkpoint | None: ...

    async def cosignatures(self, tree_size: int) -> list[Cosignature]: ...

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof; raises ``ValueError`` when records it needs were purged."""
        ...

    async def purge_before(self, time_us: int) -> int: ...


class CheckpointSigner(Protocol):
    """Signs the log's tree heads (``adapters.stores.audit_checkpoints.StoreCheckpointSigner``).

    Both methods raise ``SigningRefused`` (``gateway.core.audit_proof``) when the log cannot be signed.
    """

    public_key_pem: bytes
    key_id: str
    vkey: str

    async def prepare(self) -> None: ...

    async def checkpoint(self) -> Checkpoint | None: ...


class ProofBuilder(Protocol):
    """The inclusion proof of record ``seq`` in ``checkpoint``; None when the checkpoint does not cover it."""

    async def __call__(self, seq: int, checkpoint: Checkpoint) -> InclusionProof | None: ...


class CosignatureCollector(Protocol):
    """Fetch, check and keep each configured witness's latest cosignature; return how many were kept."""

    async def __call__(self) -> int: ...


class LiveMandates(Protocol):
    """The mandates in force, changed at run time (``adapters.stores.mandate_live.LivePolicy``)."""

    def current(self) -> Policy: ...

    def entries(self) -> list[MandateEntry]: ...

    def entry(self, mandate_id: str) -> MandateEntry | None: ...

    async def put(self, mandate: Mandate, *, by: str, now_us: int) -> MandateEntry: ...

    async def delete(self, mandate_id: str, *, by: str, now_us: int) -> MandateEntry | None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


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


class ConsentRecords(ConsentStore, Protocol):
    """A citizen's consents as the consent feature needs them: list, read, grant, revoke."""

    async def of_subject(self, subject: str) -> Sequence[Consent]: ...

    async def get(self, consent_id: str) -> Consent | None: ...

    async def add(self, c: Consent) -> None: ...

    async def revoke(self, consent_id: str, subject: str, now_us: int) -> bool: ...

    async def close(self) -> None: ...


class SecurityEvents(Protocol):
    """Refusals before the caller is authenticated: counted and logged, rate-limited."""

    def record(self, reason: str, protocol: str, detail: str = "") -> None: ...


class CountedSecurityEvents(SecurityEvents, Protocol):
    """Security events with their counts per (reason, protocol), for metrics."""

    @property
    def counts(self) -> Mapping[tuple[str, str], int]: ...


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
