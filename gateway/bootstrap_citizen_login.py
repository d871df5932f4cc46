"""Composition of the citizen's eID sign-in (``[citizen_login]``): the provider, the session store, the routes.

The session store is chosen like the other stores: ``[citizen_login] sessions`` when set ("memory",
"sqlite:PATH", a postgresql:// DSN), else beside the consents: ``sessions.db`` in the consents file's
folder, or the consents' PostgreSQL database (schema ``passerelle_sessions``), so that every process
and pod sharing the consents shares the sessions. Expired sessions and sign-ins are purged on each
sign-in and every ``PURGE_EVERY_S`` by a background task (each process; the deletions are idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Protocol

import httpx

from adapters.oidc.client import AuthlibOpenIdProvider, OidcClientSettings
from gateway.application.citizen_login import CitizenLogin, SignInPolicy
from gateway.application.runtime import Gateway
from gateway.config import Config
from gateway.config_citizen_login import CitizenLoginSection
from gateway.core.citizen_sessions import PendingSignInStore, SessionStore
from gateway.core.clock import now_us
from gateway.entrypoints._citizen_cookie import citizen_cookie
from gateway.entrypoints.routes_citizen_login import citizen_login_installer

__all__ = ["SessionStores", "install_citizen_login", "session_store_for"]

_HTTP_TIMEOUT_S = 10.0
PURGE_EVERY_S = 60.0
_log = logging.getLogger("passerelle.citizen_login")


class SessionStores(SessionStore, PendingSignInStore, Protocol):
    """Each session store keeps both: sessions and sign-ins in progress."""

    async def close(self) -> None: ...


def session_store_for(config: Config, section: CitizenLoginSection) -> SessionStores:
    """The sessions' store, as the module's docstring says."""
    target = section.sessions or config.gateway.consents
    if target == "memory":
        from adapters.stores.session_memory import InMemorySessionStore

        return InMemorySessionStore()
    if target.startswith(("postgresql://", "postgres://")):
        from adapters.stores.session_postgres import PostgresSessionStore

        return PostgresSessionStore(target)
    if not section.sessions:   # a file of its own beside the consents' file
        target = str(Path(target.removeprefix("sqlite:")).with_name("sessions.db"))
    from adapters.stores.session_sqlite import SqliteSessionStore

    return SqliteSessionStore(config.path(target.removeprefix("sqlite:")))


def _client_settings(config: Config, section: CitizenLoginSection) -> OidcClientSettings:
    key = config.path(section.private_key_file).read_bytes() if section.private_key_file else b""
    return OidcClientSettings(
        issuer=section.issuer, client_id=section.client_id, redirect_uri=f"{section.public_url}/me/auth/callback",
        post_logout_redirect_uri=f"{section.public_url}/me/", scopes=tuple(section.scopes),
        acr_values=tuple(section.acr_values), client_secret=section.client_secret, private_key_pem=key,
        private_key_alg=section.private_key_alg,
    )  # fmt: skip


def _policy(section: CitizenLoginSection) -> SignInPolicy:
    return SignInPolicy(subject_claim=section.subject_claim, acr_values=tuple(section.acr_values),
                        idle_timeout_s=section.session_idle_timeout_s,
                        absolute_timeout_s=section.session_absolute_timeout_s,
                        pending_timeout_s=section.sign_in_timeout_s)  # fmt: skip


async def install_citizen_login(gateway: Gateway) -> None:
    """With ``[citizen_login]``: the sign-in use cases on ``gateway.citizen_login`` and the /me/auth/ routes.

    Added before the page (``FEATURES`` order), whose static mount at ``/me`` would shadow the routes."""
    section = gateway.config.citizen_login
    if section is None:
        return
    http = httpx.AsyncClient(timeout=_HTTP_TIMEOUT_S, follow_redirects=False)
    store = session_store_for(gateway.config, section)
    provider = AuthlibOpenIdProvider(_client_settings(gateway.config, section), http)
    gateway.citizen_login = CitizenLogin(provider, store, store, gateway.security, _policy(section), now_us,
                                         quotas=gateway.verifier.principal_quotas)  # fmt: skip
    cookie = citizen_cookie(gateway)
    assert cookie is not None
    gateway.rest_installers.append(citizen_login_installer(cookie))
    task = asyncio.create_task(_purge(gateway.citizen_login, PURGE_EVERY_S))

    async def close() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await http.aclose()
        await store.close()

    gateway.closers.append(close)


async def _purge(login: CitizenLogin, every_s: float) -> None:
    """Expired sessions (each holds a national id) deleted even when nobody signs in; a failure is retried."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await login.purge()
        except Exception:   # the store may be down for a while: the next round tries again
            _log.warning("could not purge expired citizen sessions", exc_info=True)
