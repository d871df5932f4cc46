"""Composition of the security features: issuer key sets, sender constraints, quotas, revocations.

Called from ``gateway.bootstrap`` (the composition root); kept apart so that the
root stays short. Nothing here runs at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from adapters.keys import JwksFileKeys, JwksUrlKeys
from gateway.config import Config, IssuerSection
from gateway.core.auth import Issuer
from gateway.core.quotas import Admission, Quota
from gateway.core.revocation import Revocation, RevocationList
from gateway.quota_sync import HEARTBEAT_S, TTL_S, QuotaSync

if TYPE_CHECKING:
    from gateway.bootstrap import Gateway

__all__ = ["admission_for", "install_security", "issuers_for", "revocation_list_for", "sender_modes_for"]

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
    from gateway.bootstrap import now_us
    from gateway.entrypoints.services.revocations import RevocationSync, revocations_binding

    for keys in gateway.verifier.key_sets():
        if isinstance(keys, JwksUrlKeys):
            await keys.refresh()
            if not keys:
                _log.error("no usable key from JWKS URL; its tokens are refused until it answers",
                           extra={"fields": {"source": keys.url}})
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
