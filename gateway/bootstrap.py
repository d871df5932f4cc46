"""The composition root: the only place that picks concrete adapters and stores."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from adapters.registries import FieldMapping, GrpcRegistryAdapter, RestOperationSpec, RestRegistryAdapter
from adapters.stores.consent_cache import CachedConsentStore
from consent import Policy, Purpose, mandate_from_dict
from gateway.bootstrap_consent import consent_store_for
from gateway.bootstrap_security import admission_for, install_security, revocation_list_for, sender_modes_for
from gateway.config import Config, FieldMappingSection, RegistrySection
from gateway.core.auth import Issuer, TokenVerifier
from gateway.core.contracts import Operation, load_operations
from gateway.core.pipeline import ExchangePipeline, Registry
from gateway.core.ports import RegistryAdapter
from gateway.core.pseudonym import Pseudonymiser
from gateway.entrypoints.binding import ServiceBinding
from observability.logs import LoggingObserver, RateLimitedSecurityLog
from observability.observers import ExchangeObservers

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
    consents: CachedConsentStore
    registries: dict[str, Registry]
    security: RateLimitedSecurityLog
    pseudonymise: Pseudonymiser
    #: The gateway's own proto services (catalogue, consents, admin ...), served on both doors.
    bindings: list[ServiceBinding] = field(default_factory=list)
    #: Other REST routes (pages, JWKS, metrics): each adds routes and returns OpenAPI schemas.
    rest_installers: list[Callable[[FastAPI], dict[str, Any]]] = field(default_factory=list)
    #: Background tasks and closers owned by features (checkpointer, retention ...).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: Telemetry hooks called once per exchange (logs, metrics, operational records).
    observers: ExchangeObservers = field(default_factory=ExchangeObservers)
    #: gRPC server interceptors (telemetry ...), outermost first.
    grpc_interceptors: list[Any] = field(default_factory=list)
    #: Extra readiness facts (per-registry health ...), merged into ``ready()``'s report.
    readiness: list[Callable[[], Awaitable[dict[str, Any]]]] = field(default_factory=list)

    async def ready(self) -> dict[str, Any]:
        audit_ok = await self.audit.healthy()
        report: dict[str, Any] = {"ready": bool(audit_ok), "audit": "ok" if audit_ok else "unavailable",
                                  "registries": sorted(self.registries)}
        for probe in self.readiness:
            report.update(await probe())
        return report

    async def close(self) -> None:
        for closer in reversed(self.closers):
            await closer()
        for r in self.registries.values():
            await r.adapter.close()
        await self.audit.close()
        await self.consents.close()


def load_issuers(config: Config) -> dict[str, Issuer]:
    """Issuers with live key sets: JWKS files re-read on change, JWKS URLs fetched and cached."""
    from gateway.bootstrap_security import issuers_for

    return issuers_for(config)


def _policy(config: Config) -> Policy:
    purposes = [
        Purpose(p.code, dict(p.title), dict(p.description), p.legal_reference, p.legal_url, p.retention_days)
        for p in config.purposes
    ]
    return Policy.of(purposes, [mandate_from_dict(m.model_dump()) for m in config.mandates])


def _mapping(value: str | FieldMappingSection) -> FieldMapping:
    if isinstance(value, str):
        return FieldMapping(path=value)
    return FieldMapping(value.path, value.transform, value.currency, dict(value.values))


def _adapter(r: RegistrySection, ops: Mapping[str, Operation]) -> RegistryAdapter:
    """The registry's transport adapter inside its breaker, retries and bulkhead."""
    from adapters.registries.resilience import ResiliencePolicy, ResilientAdapter

    policy = ResiliencePolicy(max_concurrency=r.max_concurrency, max_queue=r.max_queue, retries=r.retries,
                              failures_to_open=r.breaker_failures, open_s=r.breaker_open_s)
    return ResilientAdapter(_transport(r, ops), {op.method: op for op in ops.values()}, policy)


def _transport(r: RegistrySection, ops: Mapping[str, Operation]) -> RegistryAdapter:
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
        sender_modes=sender_modes_for(config), default_sender_mode=gw.sender_constraint,
        dpop_max_age_s=gw.dpop_max_age_s, revocations=revocation_list_for(config),
    )
    pseudonymise = Pseudonymiser(config.path(gw.pseudonym_key).read_bytes())
    policy = _policy(config)
    audit = _audit_store(config)
    await audit.start()
    consents = CachedConsentStore(consent_store_for(config))
    security = RateLimitedSecurityLog()
    observers = ExchangeObservers(LoggingObserver(known_purposes=lambda: pipeline.policy().purposes))
    pipeline = ExchangePipeline(
        verifier=verifier, policy=lambda: policy, consents=consents, registries=registries, audit=audit,
        pseudonymise=pseudonymise, security=security, observer=observers, clock_us=now_us,
        admission=admission_for(config),
        ai_systems={c.id: frozenset(c.ai_systems) for c in config.consumers},
    )
    gateway = Gateway(config, operations, pipeline, verifier, policy, audit, consents, registries, security,
                      pseudonymise, observers=observers)
    for install in FEATURES:
        await install(gateway)
    return gateway


async def _catalogue(gateway: Gateway) -> None:
    from gateway.entrypoints.services.catalogue import catalogue_binding

    gateway.bindings.append(catalogue_binding(gateway))


async def _audit(gateway: Gateway) -> None:
    from gateway.entrypoints.services.audit import install_audit

    await install_audit(gateway)   # signed checkpoints (periodic), retention, GET /v1/audit/checkpoints


async def _transparency(gateway: Gateway) -> None:
    from gateway.entrypoints.services.transparency import install_transparency

    await install_transparency(gateway)   # /v1/me/accesses, export, the /me/ page, demo sign-in


async def _consent_and_purpose(gateway: Gateway) -> None:
    from gateway.entrypoints.services.consent_feature import install_consent_and_purpose

    await install_consent_and_purpose(gateway, now_us)   # live mandates, consents, receipts, access checks


async def _observability(gateway: Gateway) -> None:
    from gateway.entrypoints.services.observability import install_observability

    await install_observability(gateway)   # metrics + /metrics, front-door spans, ops records + API, readiness


#: Each feature wires itself onto the built gateway (bindings, routes, background tasks).
#: Add one line per feature; the exchange pipeline does not change.
FEATURES: list[Callable[[Gateway], Awaitable[None]]] = [
    install_security,
    _observability,
    _catalogue,
    _audit,
    _transparency,
    _consent_and_purpose,
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

