"""The running parts of one gateway process, as the features see them.

Built once by the composition root (``gateway.bootstrap.build_gateway``), which picks
the concrete stores, keys and registry clients; the features in this package read
their dependencies from here, typed by the ports they need (``gateway.core.ports``),
and add what they serve: service bindings, REST routes and door interceptors (added by
the root, from ``gateway.entrypoints``), background tasks' closers, readiness facts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from consent import Policy
from gateway.application.bulk import BulkLookups
from gateway.application.citizen_login import CitizenLogin
from gateway.application.service import ServiceBinding
from gateway.config import Config
from gateway.core.auth import TokenVerifier
from gateway.core.change_events import EventStream
from gateway.core.contracts import Operation
from gateway.core.observers import ExchangeObservers
from gateway.core.pipeline import ExchangePipeline, Registry
from gateway.core.ports import AuditStore, CheckpointSigner, ConsentRecords, CountedSecurityEvents, ProofBuilder
from gateway.core.pseudonym import Pseudonymiser

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["Gateway", "RestInstaller"]

#: Adds routes (or middleware) to the REST door's app and returns the OpenAPI component schemas they use.
RestInstaller = Callable[["FastAPI"], dict[str, Any]]


@dataclass
class Gateway:
    config: Config
    operations: dict[str, Operation]
    pipeline: ExchangePipeline
    verifier: TokenVerifier
    audit: AuditStore
    consents: ConsentRecords
    registries: dict[str, Registry]
    security: CountedSecurityEvents
    pseudonymise: Pseudonymiser
    #: Signs the exchange log's checkpoints; its public key is in every inclusion proof.
    checkpoint_signer: CheckpointSigner
    #: Inclusion proofs of one record in a signed checkpoint (the citizen's "prove it").
    proofs: ProofBuilder
    #: The gateway's own proto services (catalogue, consents, admin ...), served on both doors.
    bindings: list[ServiceBinding] = field(default_factory=list)
    #: Other REST routes (pages, JWKS, metrics): each adds routes and returns OpenAPI schemas.
    rest_installers: list[RestInstaller] = field(default_factory=list)
    #: Background tasks and closers owned by features (checkpointer, retention ...).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: Telemetry hooks called once per exchange (logs, metrics, operational records).
    observers: ExchangeObservers = field(default_factory=ExchangeObservers)
    #: gRPC server interceptors (telemetry ...), outermost first.
    grpc_interceptors: list[Any] = field(default_factory=list)
    #: gRPC services a binding cannot serve (server streaming: bulk look-ups), each an ``extra`` of
    #: ``create_grpc_server``: it registers its handlers on the server and returns their service names.
    grpc_services: list[Callable[[Any], list[str]]] = field(default_factory=list)
    #: Request size limits of their own: gRPC methods ("/package.Service/Method") and REST paths -> bytes.
    grpc_message_limits: dict[str, int] = field(default_factory=dict)
    rest_body_limits: dict[str, int] = field(default_factory=dict)
    #: Extra readiness facts (per-registry health ...), merged into ``ready()``'s report.
    readiness: list[Callable[[], Awaitable[dict[str, Any]]]] = field(default_factory=list)
    #: The citizens' eID sign-in and sessions, when ``[citizen_login]`` is configured.
    citizen_login: CitizenLogin | None = None
    #: Bulk look-ups (``BulkExchange/Lookup``, ``POST /v1/bulk:lookup``).
    bulk: BulkLookups | None = None
    #: The configured registries' change-event rpcs (``service/method`` -> stream), read by change notifications.
    event_streams: dict[str, EventStream] = field(default_factory=dict)
    #: The gateway's metrics (``observability.metrics.GatewayMetrics``, set by the composition root) for
    #: features that declare instruments of their own; None before telemetry is installed.
    metrics: Any = None

    @property
    def policy(self) -> Policy:
        """The mandates and purposes in force now (run-time changes included): the pipeline's live policy."""
        return self.pipeline.policy()

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
            if r.bulk_adapter is not None:
                await r.bulk_adapter.close()
            await r.adapter.close()
        await self.audit.close()
        await self.consents.close()
