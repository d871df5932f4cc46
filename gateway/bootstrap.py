"""The composition root: the only place that picks concrete adapters and stores.

``build_gateway`` builds the running parts (``gateway.application.runtime.Gateway``), then
each ``FEATURES`` entry wires one feature onto them: its use cases from
``gateway.application``, the stores and keys they need (adapters, behind ports), and its
REST-only routes from ``gateway.entrypoints``. Imported only by the process entry points
(``gateway.entrypoints.server``, the CLI); the ``bootstrap_*`` modules are its parts.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

from adapters.registries import FieldMapping, GrpcRegistryAdapter, RestOperationSpec, RestRegistryAdapter
from adapters.registries.batching import BatchingAdapter
from adapters.registries.resilience import ResiliencePolicy, ResilientAdapter
from adapters.stores.consent_cache import CachedConsentStore
from consent import Policy, Purpose, mandate_from_dict
from gateway.application.bulk import BulkLookups
from gateway.application.catalogue import catalogue_binding
from gateway.application.runtime import Gateway
from gateway.application.transparency import install_transparency
from gateway.bootstrap_audit import audit_store_for, checkpoint_signer_for, install_audit_feature, proofs_of
from gateway.bootstrap_citizen_login import install_citizen_login
from gateway.bootstrap_consent import consent_store_for, install_consent_feature
from gateway.bootstrap_notifications import install_notifications
from gateway.bootstrap_observability import install_observability
from gateway.bootstrap_security import (
    admission_for,
    install_security,
    issuers_for,
    revocation_list_for,
    sender_modes_for,
)
from gateway.config import Config, FieldMappingSection, RegistrySection
from gateway.core.auth import Issuer, TokenVerifier
from gateway.core.change_events import EventStream, load_event_streams
from gateway.core.clock import now_us
from gateway.core.contracts import Operation, load_operations
from gateway.core.observers import ExchangeObservers
from gateway.core.pipeline import ExchangePipeline, Registry
from gateway.core.ports import RegistryAdapter
from gateway.core.pseudonym import Pseudonymiser
from gateway.entrypoints.bulk import GRPC_METHOD, REST_PATH, grpc_bulk, rest_bulk
from gateway.entrypoints.routes_citizen import citizen_routes
from observability.logs import LoggingObserver, RateLimitedSecurityLog

__all__ = ["FEATURES", "audit_store_for", "build_gateway", "load_issuers", "resolve_demo_addresses"]


def load_issuers(config: Config) -> dict[str, Issuer]:
    """Issuers with live key sets: JWKS files re-read on change, JWKS URLs fetched and cached."""
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


def _registry(r: RegistrySection, ops: Mapping[str, Operation]) -> Registry:
    """The registry's transport adapter inside its breaker, retries and bulkhead; where its contract
    offers batch methods (gRPC), a second one for bulk items that groups them into those methods."""
    policy = ResiliencePolicy(max_concurrency=r.max_concurrency, max_queue=r.max_queue, retries=r.retries,
                              failures_to_open=r.breaker_failures, open_s=r.breaker_open_s)
    by_method = {op.method: op for op in ops.values()}
    transport = _transport(r, ops)
    bulk: RegistryAdapter | None = None
    if isinstance(transport, GrpcRegistryAdapter) and any(op.batch for op in ops.values()):
        bulk = ResilientAdapter(BatchingAdapter(transport, by_method), by_method, policy)
    return Registry(r.id, ResilientAdapter(transport, by_method, policy), r.timeout_s, bulk)


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


async def build_gateway(config: Config) -> Gateway:
    gw = config.gateway
    operations: dict[str, Operation] = {}
    registries: dict[str, Registry] = {}
    event_streams: dict[str, EventStream] = {}
    for r in config.registries:
        ops = load_operations([r.contract])
        operations.update(ops)
        event_streams.update(load_event_streams([r.contract]))
        registries[r.contract] = _registry(r, ops)
    consumers = {(c.issuer, c.client_id): c.id for c in config.consumers}
    verifier = TokenVerifier(
        load_issuers(config), consumers, audience=gw.audience, max_lifetime_s=gw.token_max_lifetime_s,
        leeway_s=gw.token_leeway_s, max_token_bytes=gw.max_token_bytes, clock=time.time,
        sender_modes=sender_modes_for(config), default_sender_mode=gw.sender_constraint,
        dpop_max_age_s=gw.dpop_max_age_s, revocations=revocation_list_for(config),
    )
    pseudonymise = Pseudonymiser(config.path(gw.pseudonym_key).read_bytes())
    policy = _policy(config)
    audit = audit_store_for(config)
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
    gateway = Gateway(config, operations, pipeline, verifier, audit, consents, registries, security,
                      pseudonymise, checkpoint_signer=checkpoint_signer_for(config, audit), proofs=proofs_of(audit),
                      observers=observers, event_streams=event_streams)
    for install in FEATURES:
        await install(gateway)
    return gateway


async def _catalogue(gateway: Gateway) -> None:
    gateway.bindings.append(catalogue_binding(gateway, now_us))


async def _bulk(gateway: Gateway) -> None:
    g = gateway.config.gateway
    gateway.bulk = BulkLookups(gateway.pipeline, gateway.operations, max_items=g.bulk_max_items,
                               in_flight=g.bulk_in_flight, consumer_in_flight=g.bulk_consumer_in_flight,
                               idle_timeout_s=g.bulk_idle_timeout_s, consumer_batches=g.bulk_consumer_batches,
                               group_max=g.bulk_group_max)
    gateway.grpc_services.append(grpc_bulk(gateway.bulk))
    gateway.rest_installers.append(rest_bulk(gateway.bulk))
    gateway.grpc_message_limits[GRPC_METHOD] = g.bulk_max_request_bytes   # its own, larger limits
    gateway.rest_body_limits[REST_PATH] = g.bulk_max_request_bytes


async def _transparency(gateway: Gateway) -> None:
    await install_transparency(gateway)   # /v1/me/accesses and its proofs
    gateway.rest_installers += citizen_routes(gateway)   # export, demo sign-in (demo mode), the /me/ page


#: Each feature wires itself onto the built gateway (bindings, routes, background tasks).
#: Add one line per feature; the exchange pipeline does not change.
FEATURES: list[Callable[[Gateway], Awaitable[None]]] = [
    install_security,        # first JWKS fetches, revocations and their admin API, limits, shared quotas
    install_observability,   # metrics + /metrics, front-door spans, ops records + API, readiness
    _catalogue,
    _bulk,                   # bulk look-ups on both doors: each item a full exchange
    install_audit_feature,   # signed checkpoints (periodic), retention, witnesses, GET /v1/audit/checkpoint(s)
    install_citizen_login,   # [citizen_login]: eID sign-in, sessions, /me/auth/ (before the page's mount)
    _transparency,
    install_consent_feature,   # live mandates, consents, receipts and their JWKS, access checks
    install_notifications,   # change notifications: subscriptions API, change-stream readers, delivery
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

