"""Small interfaces between the core or the application layer and the edges (stores, registries, keys).

Each is implemented in ``adapters/`` (or ``observability/`` for telemetry hooks) and handed to the
features by the composition root (``gateway/bootstrap*.py``) through the running parts
(``gateway.application.runtime.Gateway``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

from consent.model import Consent, Mandate
from consent.policy import Policy
from gateway.core.audit_proof import InclusionProof
from gateway.core.merkle import Checkpoint
from gateway.core.notifications import (
    DeadLetter,
    Delivery,
    NewDelivery,
    StoredEvent,
    Subscription,
    SubscriptionBacklog,
)
from gateway.core.signed_note import Cosignature
from gateway.core.types import AuditReceipt, AuditRecord, ExchangeTiming, MandateEntry, StoredAuditRecord

__all__ = [
    "AuditLog",
    "AuditQuery",
    "AuditReader",
    "AuditStore",
    "ChangeFeed",
    "CheckpointSigner",
    "ConsentRecords",
    "ConsentStore",
    "CosignatureCollector",
    "CountedSecurityEvents",
    "ExchangeObserver",
    "LiveMandates",
    "NoteSigner",
    "NotificationStore",
    "ProofBuilder",
    "ProofReplayStore",
    "ReceiptKey",
    "RegistryAdapter",
    "SecurityEvents",
    "WebhookResult",
    "WebhookSender",
]


class AuditLog(Protocol):
    """Append-only exchange log. There is no update and no delete."""

    async def append(self, record: AuditRecord) -> AuditReceipt:
        """Return only once the record is durably committed; raise ``AuditUnavailable`` otherwise."""
        ...

    async def append_all(self, records: Sequence[AuditRecord]) -> list[AuditReceipt]:
        """Several records submitted together (a group-committing store writes them in one transaction);
        return their receipts, in order, once every one is durably committed; raise ``AuditUnavailable``
        if any is not (the others may be)."""
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


class NotificationStore(Protocol):
    """Change notifications' durable state: subscriptions, follow lists, each registry's cursor, the outbox.

    Implementations: ``adapters.stores.notifications_memory``, ``notifications_sqlite`` (the contract
    suite is ``tests/integration/test_notification_stores.py``). Subjects are keyed pseudonyms.

    - ``ingest`` writes a batch of events, their deliveries and the registry's new cursor in ONE
      transaction: a restart reads on from the cursor, without loss or duplication (an event already
      kept is ignored: (registry, event_id) is unique, and so is (subscription, registry, event_id)).
    - ``lease`` hands each due, pending delivery to one worker until ``now_us + lease_us`` (several
      workers or gateways share the outbox; on PostgreSQL this is ``FOR UPDATE SKIP LOCKED``), the
      oldest first, and never a delivery while an older one of the same subscription and subject is
      still pending (order per subject). Every later call names the ``owner``: a worker whose lease
      ran out changes nothing.
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def add_subscription(self, sub: Subscription) -> None: ...

    async def subscriptions(self, consumer: str | None = None) -> Sequence[Subscription]: ...

    async def subscription(self, subscription_id: str) -> Subscription | None: ...

    async def delete_subscription(self, subscription_id: str) -> bool:
        """Drop the subscription, its follow list and its pending deliveries; False if there was none."""
        ...

    async def follow(self, subscription_id: str, subjects: Sequence[str], now_us: int, limit: int) -> tuple[int, int]:
        """Add subjects (pseudonyms); (added, total). ``ValueError`` (nothing added) past ``limit`` in all."""
        ...

    async def unfollow(self, subscription_id: str, subjects: Sequence[str]) -> tuple[int, int]: ...

    async def followed(self, subscription_id: str, subjects: Sequence[str]) -> tuple[set[str], int]:
        """Which of ``subjects`` the subscription follows, and how many it follows in all."""
        ...

    async def followers(self, event_type: str, subjects: Sequence[str]) -> Mapping[str, set[str]]:
        """Subject -> ids of the subscriptions of ``event_type`` that follow it (only subjects with some)."""
        ...

    async def cursor(self, registry: str) -> int: ...

    async def ingest(self, registry: str, cursor: int, events: Sequence[StoredEvent],
                     deliveries: Sequence[NewDelivery]) -> int:  # fmt: skip
        """Keep the events and deliveries and move the cursor, atomically; the deliveries created."""
        ...

    async def lease(self, owner: str, now_us: int, lease_us: int, limit: int, *, mode: str,
                    subscription_id: str = "") -> Sequence[Delivery]:  # fmt: skip
        ...

    async def release(self, delivery_id: int, owner: str, due_us: int) -> bool:
        """Give a leased delivery back untried (not an attempt), due at ``due_us``."""
        ...

    async def unacked(self, subscription_id: str, owner: str, delivery_ids: Sequence[int]) -> set[int]:
        """Which of ``delivery_ids`` are still pending and leased by ``owner`` (a stream's unacknowledged)."""
        ...

    async def mark_audited(self, delivery_id: int, owner: str) -> bool: ...

    async def finish(self, delivery_id: int, owner: str, state: str, now_us: int) -> bool:
        """End a delivery: ``state`` is delivered | refused | skipped. False when the lease was lost."""
        ...

    async def retry_later(self, delivery_id: int, owner: str, due_us: int, error: str) -> bool: ...

    async def dead(self, delivery_id: int, owner: str, error: str, now_us: int) -> bool: ...

    async def ack(self, subscription_id: str, event_ids: Sequence[str], now_us: int) -> list[int]:
        """Stream deliveries acknowledged: each pending, leased one of these events whose record is written
        (so it was sent: an agency cannot acknowledge an event it was never given), delivered; their ids."""
        ...

    async def dead_letters(self, consumer: str | None, limit: int) -> Sequence[DeadLetter]: ...

    async def redeliver(self, delivery_id: int, now_us: int) -> DeadLetter | None:
        """A dead letter back to pending, attempts from zero, due now; None if it is no dead letter."""
        ...

    async def backlog(self) -> Sequence[SubscriptionBacklog]: ...

    async def purge(self, before_us: int) -> int:
        """Drop deliveries that ended (delivered, refused, skipped) before ``before_us``, and every kept
        event no delivery needs any more (the change messages hold personal data); the rows dropped."""
        ...


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """One webhook attempt: ``ok`` for a 2xx answer; else a short, data-free ``error`` ("HTTP 503",
    "timeout", "refused address" ...); ``permanent`` for a failure no retry can fix."""

    ok: bool
    error: str = ""
    status: int = 0
    permanent: bool = False


class WebhookSender(Protocol):
    """Sends one CloudEvent (structured JSON, Standard Webhooks signature) to a subscription's URL.

    Never raises for the endpoint's behaviour: refusal, garbage, timeouts and hangs are results, each
    bounded by the sender's timeouts (``adapters.notifications.webhook``).
    """

    async def send(self, url: str, secret: str, event: dict[str, object], event_id: str) -> WebhookResult: ...

    async def close(self) -> None: ...


class ChangeFeed(Protocol):
    """One registry's change-event stream (``adapters.notifications.change_feed.GrpcChangeFeed``).

    ``watch(after)`` yields the envelopes recorded after sequence ``after``, then each new one, until
    the connection ends (``ConnectionError``) or the caller stops iterating.
    """

    def watch(self, after: int) -> AsyncIterator[Message]: ...

    async def close(self) -> None: ...
