"""The composition root: the only place that picks concrete adapters and stores."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from fastapi import FastAPI

from adapters.registries import FieldMapping, GrpcRegistryAdapter, RestOperationSpec, RestRegistryAdapter
from adapters.stores.consent_sqlite import SqliteConsentStore
from consent import Mandate, Policy, Purpose
from gateway.config import Config, FieldMappingSection, RegistrySection, mandate_window_us
from gateway.core.auth import Issuer, TokenVerifier
from gateway.core.contracts import Operation, load_operations
from gateway.core.pipeline import ExchangePipeline, Registry
from gateway.core.ports import RegistryAdapter
from gateway.core.pseudonym import Pseudonymiser
from gateway.entrypoints.binding import ServiceBinding
from observability.logs import LoggingObserver, RateLimitedSecurityLog

__all__ = ["Gateway", "build_gateway", "load_issuers", "now_us"]


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class Gateway:
    config: Config
    operations: dict[str, Operation]
    pipeline: ExchangePipeline
    verifier: TokenVerifier
    policy: Policy
    audit: Any
    consents: SqliteConsentStore
    registries: dict[str, Registry]
    security: RateLimitedSecurityLog
    pseudonymise: Pseudonymiser
    #: The gateway's own proto services (catalogue, consents, admin ...), served on both doors.
    bindings: list[ServiceBinding] = field(default_factory=list)
    #: Other REST routes (pages, JWKS, metrics): each adds routes and returns OpenAPI schemas.
    rest_installers: list[Callable[[FastAPI], dict[str, Any]]] = field(default_factory=list)
    #: Background tasks and closers owned by features (checkpointer, retention ...).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def ready(self) -> dict[str, Any]:
        audit_ok = await self.audit.healthy()
        return {"ready": bool(audit_ok), "audit": "ok" if audit_ok else "unavailable",
                "registries": sorted(self.registries)}

    async def close(self) -> None:
        for closer in reversed(self.closers):
            await closer()
        for r in self.registries.values():
            await r.adapter.close()
        await self.audit.close()
        await self.consents.close()


def load_issuers(config: Config) -> dict[str, Issuer]:
    issuers = {}
    for s in config.issuers:
        jwks = json.loads(config.path(s.jwks_file).read_text())
        keys = {k.key_id: k.key for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id}
        issuers[s.id] = Issuer(s.id, s.issuer, s.role, frozenset(s.algorithms), keys)
    return issuers


def _policy(config: Config) -> Policy:
    purposes = [
        Purpose(p.code, dict(p.title), dict(p.description), p.legal_reference, p.legal_url, p.retention_days)
        for p in config.purposes
    ]
    mandates = []
    for m in config.mandates:
        start, end = mandate_window_us(m)
        mandates.append(
            Mandate(m.id, m.consumer, m.service, frozenset(m.purposes), m.legal_basis, m.legal_reference,
                    frozenset(m.fields), frozenset(m.categories), start, end, m.hidden_days, m.hidden_reason)
        )
    return Policy.of(purposes, mandates)


def _mapping(value: str | FieldMappingSection) -> FieldMapping:
    if isinstance(value, str):
        return FieldMapping(path=value)
    return FieldMapping(value.path, value.transform, value.currency, dict(value.values))


def _adapter(r: RegistrySection, ops: Mapping[str, Operation]) -> RegistryAdapter:
    by_method = {op.method: op for op in ops.values()}
    if r.adapter == "grpc":
        return GrpcRegistryAdapter(r.target, by_method, max_concurrency=r.max_concurrency)
    specs = {
        name: RestOperationSpec(o.method, o.path, dict(o.query), o.root,
                                {k: _mapping(v) for k, v in o.response.items()}, tuple(o.not_found_status))
        for name, o in r.operations.items()
    }
    return RestRegistryAdapter(r.base_url, by_method, specs, max_connections=min(r.max_concurrency, 256))


def _audit_store(config: Config) -> Any:
    target = config.gateway.audit
    if target.startswith(("postgresql://", "postgres://")):
        from adapters.stores.audit_postgres import PostgresAuditLog

        return PostgresAuditLog(target)
    from adapters.stores.audit_sqlite import SqliteAuditLog

    return SqliteAuditLog(config.path(target.removeprefix("sqlite:")))


async def build_gateway(config: Config) -> Gateway:
    gw = config.gateway
    operations: dict[str, Operation] = {}
    registries: dict[str, Registry] = {}
    for r in config.registries:
        ops = load_operations([r.contract])
        operations.update(ops)
        registries[r.contract] = Registry(r.id, _adapter(r, ops), r.timeout_s)
    consumers = {(c.issuer, c.client_id): c.id for c in config.consumers}
    verifier = TokenVerifier(
        load_issuers(config), consumers, audience=gw.audience, max_lifetime_s=gw.token_max_lifetime_s,
        leeway_s=gw.token_leeway_s, max_token_bytes=gw.max_token_bytes, clock=time.time,
    )
    pseudonymise = Pseudonymiser(config.path(gw.pseudonym_key).read_bytes())
    policy = _policy(config)
    audit = _audit_store(config)
    await audit.start()
    consents = SqliteConsentStore(config.path(gw.consents.removeprefix("sqlite:")))
    security = RateLimitedSecurityLog()
    pipeline = ExchangePipeline(
        verifier=verifier, policy=lambda: policy, consents=consents, registries=registries, audit=audit,
        pseudonymise=pseudonymise, security=security, observer=LoggingObserver(), clock_us=now_us,
    )
    gateway = Gateway(config, operations, pipeline, verifier, policy, audit, consents, registries, security, pseudonymise)
    for install in FEATURES:
        await install(gateway)
    return gateway


async def _catalogue(gateway: Gateway) -> None:
    from gateway.entrypoints.services.catalogue import catalogue_binding

    gateway.bindings.append(catalogue_binding(gateway))


#: Each feature wires itself onto the built gateway (bindings, routes, background tasks).
#: Add one line per feature; the exchange pipeline does not change.
FEATURES: list[Callable[[Gateway], Awaitable[None]]] = [
    _catalogue,
]


def resolve_demo_addresses(config: Config, grpc_port: int, tax_port: int) -> Config:
    """Point the registries marked ``demo`` at the demo registries' actual ports."""
    registries = []
    for r in config.registries:
        if r.demo:
            update = {"target": f"127.0.0.1:{grpc_port}"} if r.adapter == "grpc" else {"base_url": f"http://127.0.0.1:{tax_port}"}
            r = r.model_copy(update=update)
        registries.append(r)
    return config.model_copy(update={"registries": registries})


def data_path(config: Config, value: str) -> Path:
    return config.path(value)
