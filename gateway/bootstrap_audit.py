"""Composition of the audit features: the exchange log's store, its checkpoint signer, witnesses and proofs.

Picks the concrete parts (``adapters.stores``, ``adapters.keys``, ``adapters.witness``) that
``gateway.application.audit`` and ``gateway.application.transparency`` use through ports, and
adds the REST-only note route (``gateway.entrypoints.routes_audit``). Part of the composition
root (``gateway.bootstrap``); the CLI's audit commands use it too. Nothing here runs at import time.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import httpx

from adapters.keys.file_signer import make_checkpoint_signer
from adapters.stores.audit_checkpoints import (
    CheckpointStore,
    ProofSource,
    StoreCheckpointSigner,
    make_proof,
    signer_state_of,
)
from adapters.witness.cosignatures import WitnessKey, collect_cosignatures, witness_key, witnessed_checkpoints
from gateway.application.audit import install_audit
from gateway.application.runtime import Gateway
from gateway.config import Config
from gateway.core.clock import now_us
from gateway.core.merkle import Checkpoint
from gateway.core.ports import ProofBuilder
from gateway.core.signed_note import vkey
from gateway.entrypoints.routes_audit import note_installer

if TYPE_CHECKING:
    from adapters.stores.audit_postgres import PostgresAuditLog
    from adapters.stores.audit_sqlite import SqliteAuditLog

__all__ = [
    "audit_store_for", "checkpoint_signer_for", "install_audit_feature", "proofs_of", "witnesses_fetcher",
    "witnesses_of",
]  # fmt: skip


def audit_store_for(config: Config) -> SqliteAuditLog | PostgresAuditLog:
    """The exchange log ``[gateway] audit`` names: a PostgreSQL DSN or a SQLite file."""
    target = config.gateway.audit
    if target.startswith(("postgresql://", "postgres://")):
        from adapters.stores.audit_postgres import PostgresAuditLog  # psycopg only when configured

        return PostgresAuditLog(target)
    from adapters.stores.audit_sqlite import SqliteAuditLog

    return SqliteAuditLog(config.path(target.removeprefix("sqlite:")))


def checkpoint_signer_for(config: Config, audit: CheckpointStore) -> StoreCheckpointSigner:
    """The checkpoint signer, with its state outside the database and the configured witnesses as references.

    ``audit`` is the concrete store (``audit_store_for``): the signer reads rows and anchors, which no port shows.
    """
    return StoreCheckpointSigner(audit, make_checkpoint_signer(config), clock_us=now_us,
                            state=signer_state_of(config),
                            witnessed=witnesses_fetcher(witnesses_of(config)))  # fmt: skip


def proofs_of(audit: ProofSource) -> ProofBuilder:
    """Inclusion proofs read from ``audit`` (the concrete store: proofs need its ``inclusion_proof``)."""
    return functools.partial(make_proof, audit)


def witnesses_fetcher(witnesses: list[WitnessKey]) -> Callable[[], Awaitable[list[tuple[str, Checkpoint]]]] | None:
    """What the signer calls before signing: the witnesses' latest cosigned checkpoints (config URLs)."""
    if not witnesses:
        return None

    async def fetch() -> list[tuple[str, Checkpoint]]:
        async with httpx.AsyncClient(timeout=3.0) as client:
            return await witnessed_checkpoints(witnesses, client)

    return fetch


def witnesses_of(config: Config) -> list[WitnessKey]:
    """The configured ``[[witnesses]]``; raises ``ValueError`` naming a bad key."""
    return [witness_key(w.name, w.url, w.public_key) for w in config.witnesses]


async def install_audit_feature(gateway: Gateway) -> None:
    """Signed checkpoints (periodic), retention, witnesses' cosignatures, and ``GET /v1/audit/checkpoint``."""
    witnesses = witnesses_of(gateway.config)
    client = httpx.AsyncClient(timeout=5.0) if witnesses else None

    async def collect() -> int:
        assert client is not None
        return await collect_cosignatures(gateway.audit, witnesses, client)

    await install_audit(
        gateway,
        witness_vkeys=[vkey(w.name, w.verifier.public_key, w.verifier.sig_type) for w in witnesses],
        collect_cosignatures=collect if client is not None else None,
    )
    if client is not None:
        gateway.closers.append(client.aclose)
    gateway.rest_installers.append(note_installer(gateway))
