"""Composition of the security features: issuer key sets, sender constraints, quotas, revocations.

Also: the DPoP replay store shared by the processes, the public URL proofs are checked
against, quotas of citizens and staff, and limits per client address on both doors.

Called from ``gateway.bootstrap`` (the composition root); kept apart so that the
root stays short. Nothing here runs at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from adapters.keys import JwksFileKeys, JwksUrlKeys
from gateway.application.revocations import RevocationSync, revocations_binding
from gateway.application.runtime import Gateway
from gateway.config import Config, IssuerSection
from gateway.core.auth import Issuer
from gateway.core.clock import now_us
from gateway.core.errors import Reason
from gateway.core.quotas import AddressQuotas, Admission, KeyedBuckets, PrincipalQuotas, Quota
from gateway.core.revocation import Revocation, RevocationList
from gateway.entrypoints._address_limits import AsgiAddressLimits, GrpcAddressLimits
from gateway.quota_sync import HEARTBEAT_S, TTL_S, QuotaSync

__all__ = [
    "address_quotas_for", "admission_for", "install_security", "issuers_for", "principal_quotas_for",
    "replay_store_for", "revocation_list_for", "sender_modes_for",
]

_log = logging.getLogger("passerelle.security")
#: How often each process looks for revocations made by another process.
REVOCATION_POLL_S = 1.0


def _keys(config: Config, s: IssuerSection, client: httpx.AsyncClient | None) -> Mapping[str, Any]:
    if s.jwks_file:
        return JwksFileKeys(config.path(s.jwks_file))
    return JwksUrlKeys(s.jwks_url, client=client, ttl_s=s.jwks_ttl_s, min_refresh_s=s.jwks_min_refresh_s)


def issuers_for(config: Config, client: httpx.AsyncClient | None = None) -> dict[str, Issuer]:
    """One live key set per issuer (file re-read on change, or URL fetched and cached)."""
    return {s.id: Issuer(s.id, s.issuer, s.role, frozenset(s.algorithms), _keys(config, s, client))
            for s in config.issuers}


def sender_modes_for(config: Config) -> dict[str, str]:
    return {c.id: c.sender_constraint or config.gateway.sender_constraint for c in config.consumers}


def admission_for(config: Config) -> Admission:
    gw = config.gateway
    default = Quota(gw.rate_per_s, gw.burst, gw.max_concurrent)
    per = {
        c.id: Quota(gw.rate_per_s if c.rate_per_s is None else c.rate_per_s, c.burst or gw.burst,
                    gw.max_concurrent if c.max_concurrent is None else c.max_concurrent)
        for c in config.consumers
    }
    return Admission(default, per)


def principal_quotas_for(config: Config) -> PrincipalQuotas:
    """Citizens' and staff members' own quotas (agencies': ``admission_for``)."""
    gw = config.gateway
    return PrincipalQuotas({"citizen": KeyedBuckets(gw.citizen_rate_per_s, gw.citizen_burst),
                            "staff": KeyedBuckets(gw.staff_rate_per_s, gw.staff_burst)})


def address_quotas_for(config: Config) -> AddressQuotas:
    """Per client address: calls without a token, and failed authentications."""
    gw = config.gateway
    return AddressQuotas(KeyedBuckets(gw.address_rate_per_s, gw.address_burst),
                         KeyedBuckets(gw.failed_auth_per_s, gw.failed_auth_burst))


def replay_store_for(config: Config) -> Any:
    """Where used DPoP proofs are recorded: ``dpop_replay``, or beside the revocations (their backend)."""
    target = config.gateway.dpop_replay or config.gateway.revocations
    if target == "memory":
        from adapters.stores.dpop_replay_memory import InMemoryProofReplayStore

        return InMemoryProofReplayStore()
    if target.startswith(("postgresql://", "postgres://")):
        from adapters.stores.dpop_replay_postgres import PostgresProofReplayStore

        return PostgresProofReplayStore(target)
    if not config.gateway.dpop_replay:   # a file of its own beside the revocations' file
        target = str(Path(target.removeprefix("sqlite:")).with_name("dpop_replay.db"))
    from adapters.stores.dpop_replay_sqlite import SqliteProofReplayStore

    return SqliteProofReplayStore(config.path(target.removeprefix("sqlite:")))


def _install_limits(gateway: Gateway) -> None:
    """The verifier's public URL, replay store and per-principal quotas; per-address limits on both doors."""
    config, verifier = gateway.config, gateway.verifier
    verifier.public_url = config.gateway.public_url.rstrip("/")
    verifier.principal_quotas = principal_quotas_for(config)
    verifier.replay_store = replay_store_for(config)
    limits = address_quotas_for(config)

    def refused(reason: Reason, protocol: str) -> None:
        gateway.pipeline.record_security_event(reason, protocol)

    def rest(app: Any) -> dict[str, Any]:
        app.add_middleware(AsgiAddressLimits, quotas=limits, clock=time.monotonic, on_refusal=refused)
        return {}

    gateway.rest_installers.append(rest)
    gateway.grpc_interceptors.append(GrpcAddressLimits(limits, clock=time.monotonic, on_refusal=refused))


def _static_revocations(config: Config) -> list[Revocation]:
    r = config.revoked
    return ([Revocation("jti", v, "configuration") for v in r.jtis]
            + [Revocation("consumer", v, "configuration") for v in r.consumers]
            + [Revocation("key", v, "configuration") for v in r.keys])


def revocation_list_for(config: Config) -> RevocationList:
    return RevocationList(_static_revocations(config))


def _revocation_store(config: Config) -> Any:
    target = config.gateway.revocations
    if target == "memory":
        from adapters.stores.revocations_memory import InMemoryRevocationStore

        return InMemoryRevocationStore()
    if target.startswith(("postgresql://", "postgres://")):
        from adapters.stores.revocations_postgres import PostgresRevocationStore

        return PostgresRevocationStore(target)
    from adapters.stores.revocations_sqlite import SqliteRevocationStore

    return SqliteRevocationStore(config.path(target.removeprefix("sqlite:")))


def _quota_board(config: Config) -> Any:
    """The heartbeat board that shares quotas between processes, or None (each process admits it all)."""
    gw = config.gateway
    target = gw.quotas or (gw.audit if gw.audit.startswith(("postgresql://", "postgres://")) else "local")
    if target == "local":
        return None
    if not target.startswith(("postgresql://", "postgres://")):
        raise ValueError(f'gateway.quotas must be "", "local" or a postgresql:// DSN, not {target!r}')
    from adapters.stores.quota_postgres import PostgresQuotaBoard

    return PostgresQuotaBoard(target, ttl_s=TTL_S)


async def _share_quotas(gateway: Gateway) -> None:
    """When a board is configured: join it now (the first shares hold before serving), then beat."""
    board, admission = _quota_board(gateway.config), gateway.pipeline.admission
    if board is None or admission is None:
        return
    sync = QuotaSync(board, admission)
    await sync.step()
    task = asyncio.create_task(sync.run(HEARTBEAT_S))

    async def close() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):  # the board may be down: the others drop us after its TTL
            await sync.stop()

    gateway.closers.append(close)


async def install_security(gateway: Gateway) -> None:
    """Feature: first JWKS fetches, the revocation store and its sync task, the admin binding."""
    for keys in gateway.verifier.key_sets():
        if isinstance(keys, JwksUrlKeys):
            await keys.refresh()
            if not keys:
                _log.error("no usable key from JWKS URL; its tokens are refused until it answers",
                           extra={"fields": {"source": keys.url}})
    _install_limits(gateway)
    store = _revocation_store(gateway.config)
    sync = RevocationSync(store, gateway.verifier.revocations, _static_revocations(gateway.config), now_us)
    await sync.reload()
    task = asyncio.create_task(_poll(sync))
    gateway.bindings.append(revocations_binding(gateway, sync, now_us))

    async def close() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
        if gateway.verifier.replay_store is not None:
            await gateway.verifier.replay_store.close()
        for keys in gateway.verifier.key_sets():
            if isinstance(keys, JwksUrlKeys):
                await keys.close()

    gateway.closers.append(close)
    await _share_quotas(gateway)


async def _poll(sync: Any) -> None:
    last_full = time.monotonic()
    while True:
        await asyncio.sleep(REVOCATION_POLL_S)
        try:
            # A full reload each minute also drops revocations whose end has passed.
            full = time.monotonic() - last_full > 60
            await sync.poll(force=full)
            last_full = time.monotonic() if full else last_full
        except Exception:  # keep polling; the last good list stays in force
            _log.exception("revocation sync failed")
