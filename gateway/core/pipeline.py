"""The exchange: authenticate → validate → authorise → consent → adapter → minimise → audit → answer.

Every exchange by an authenticated consumer produces exactly one audit record,
allowed or refused, and no data leaves before its record is committed.
Refusals before authentication are security events, not exchange records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.message import Message

from consent import Decision, Mandate, Policy, allowed_fields, check_consent
from gateway.core.auth import Principal, TokenVerifier
from gateway.core.contracts import Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.minimise import minimise
from gateway.core.ports import AuditLog, ConsentStore, ExchangeObserver, RegistryAdapter, SecurityEvents
from gateway.core.pseudonym import Pseudonymiser
from gateway.core.types import AuditRecord, EventKind, Outcome
from gateway.core.validation import format_problem

__all__ = ["CallContext", "ExchangePipeline", "Registry"]

_FAILURES = frozenset(
    {
        Reason.SUBJECT_NOT_FOUND,
        Reason.REGISTRY_UNAVAILABLE,
        Reason.REGISTRY_TIMEOUT,
        Reason.REGISTRY_BAD_RESPONSE,
        Reason.AUDIT_UNAVAILABLE,
        Reason.INTERNAL,
    }
)
#: Time kept back from the caller's deadline to record the exchange and answer.
_DEADLINE_MARGIN_S = 0.005


@dataclass(slots=True)
class CallContext:
    """What a front door extracted from the call, protocol-neutral."""

    protocol: str                      # "grpc" | "rest"
    token: str | None
    purpose: str = ""
    consent_id: str = ""
    case_id: str = ""
    officer_id: str = ""
    request_id: str = ""
    trace_id: str = ""
    ai_system: str = ""
    field_mask: tuple[str, ...] = ()
    timeout_s: float | None = None     # the caller's remaining deadline, if any
    metadata: list[tuple[str, str]] = field(default_factory=list)   # forwarded to the registry
    # Sender-constraint evidence, filled by the front doors (RFC 8705 mTLS / RFC 9449 DPoP).
    peer_cert_sha256: str = ""         # base64url SHA-256 of the client certificate (gRPC mTLS)
    dpop_proof: str = ""               # the DPoP header (REST)
    http_method: str = ""
    http_url: str = ""


@dataclass(frozen=True, slots=True)
class Registry:
    """A configured registry: its adapter and the longest it may take."""

    id: str
    adapter: RegistryAdapter
    timeout_s: float


@dataclass(slots=True)
class _Trail:
    """What the audit record will say, filled in as the exchange progresses."""

    consumer: str
    subject: str = ""
    legal_basis: str = ""
    legal_reference: str = ""
    consent_id: str = ""
    fields: tuple[str, ...] = ()
    hidden_until_us: int = 0
    hidden_reason: str = ""


class ExchangePipeline:
    def __init__(
        self,
        *,
        verifier: TokenVerifier,
        policy: Callable[[], Policy],
        consents: ConsentStore,
        registries: Mapping[str, Registry],      # service full name -> registry
        audit: AuditLog,
        pseudonymise: Pseudonymiser,
        security: SecurityEvents,
        observer: ExchangeObserver,
        clock_us: Callable[[], int],
    ) -> None:
        self._verifier = verifier
        self.policy = policy
        self._consents = consents
        self._registries = registries
        self._audit = audit
        self._pseudonymise = pseudonymise
        self._security = security
        self._observer = observer
        self._clock_us = clock_us

    def authenticate(self, ctx: CallContext, *, kind: str = "consumer") -> Principal:
        """Verify the bearer token; refusals here are security events."""
        try:
            principal = self._verifier.verify(ctx.token)
            if principal.kind != kind:
                raise GatewayError(Reason.WRONG_TOKEN_SCOPE, f"This operation needs a {kind} token")
        except GatewayError as exc:
            self._security.record(exc.reason, ctx.protocol)
            raise
        return principal

    async def exchange(self, op: Operation, request: Message, ctx: CallContext) -> Message:
        started = time.perf_counter()
        principal = self.authenticate(ctx)
        trail = _Trail(consumer=principal.id)
        try:
            response = await self._checked_call(op, request, ctx, trail, started)
        except GatewayError as exc:
            await self._record(op, ctx, trail, exc.reason, started)
            raise
        await self._record(op, ctx, trail, None, started)
        return response

    async def _checked_call(
        self, op: Operation, request: Message, ctx: CallContext, trail: _Trail, started: float
    ) -> Message:
        if op.subject_field:
            trail.subject = self._pseudonymise(getattr(request, op.subject_field))
        self._validate(op, request)
        if not ctx.purpose:
            raise GatewayError(Reason.PURPOSE_MISSING)
        now_us = self._clock_us()
        mandate = self._authorise(op, ctx, trail, now_us)
        wanted = self._fields_wanted(op, mandate, ctx)
        if mandate.needs_consent:
            await self._check_consent(ctx, trail, now_us)
        registry = self._registries.get(op.service)
        if registry is None:
            raise GatewayError(Reason.UNKNOWN_SERVICE)
        timeout = self._timeout(registry, ctx, started)
        answer = await registry.adapter.call(op.method, request, timeout=timeout, metadata=ctx.metadata)
        trail.fields = minimise(answer, wanted)
        return answer

    def _validate(self, op: Operation, request: Message) -> None:
        if op.subject_field and not getattr(request, op.subject_field):
            raise GatewayError(Reason.INVALID_ARGUMENT, f"{op.subject_field} is required", field=op.subject_field)
        today = datetime.fromtimestamp(self._clock_us() / 1e6, UTC).date()
        for name, fmt in op.formats.items():
            problem = format_problem(fmt, getattr(request, name), today=today)
            if problem:
                raise GatewayError(Reason.INVALID_ARGUMENT, f"{name}: {problem}", field=name)

    def _authorise(self, op: Operation, ctx: CallContext, trail: _Trail, now_us: int) -> Mandate:
        decision: Decision = self.policy().decide(
            consumer=trail.consumer, service=op.full_name, purpose=ctx.purpose, now_us=now_us
        )
        if not decision.allowed or decision.mandate is None:
            raise GatewayError(Reason(decision.reason), decision.explanation)
        m = decision.mandate
        trail.legal_basis, trail.legal_reference = m.legal_basis, m.legal_reference
        if m.hidden_days:
            trail.hidden_until_us = now_us + m.hidden_days * 86_400_000_000
            trail.hidden_reason = m.hidden_reason
        return m

    def _fields_wanted(self, op: Operation, mandate: Mandate, ctx: CallContext) -> frozenset[str]:
        allowed = allowed_fields(mandate, op.field_categories)
        if not ctx.field_mask:
            return allowed
        by_any_name = {f.name: f.name for f in op.response_fields} | {f.json_name: f.name for f in op.response_fields}
        unknown = [n for n in ctx.field_mask if n not in by_any_name]
        if unknown:
            raise GatewayError(Reason.INVALID_ARGUMENT, f"unknown field in field mask: {unknown[0]}", field="fields")
        return allowed & {by_any_name[n] for n in ctx.field_mask}

    async def _check_consent(self, ctx: CallContext, trail: _Trail, now_us: int) -> None:
        candidates = await self._consents.for_subject(trail.subject, trail.consumer, ctx.purpose)
        verdict = check_consent(
            candidates,
            subject=trail.subject,
            consumer=trail.consumer,
            purpose=ctx.purpose,
            now_us=now_us,
            consent_id=ctx.consent_id,
        )
        if verdict.consent is not None:
            trail.consent_id = verdict.consent.id
        if not verdict.allowed or verdict.consent is None:
            raise GatewayError(Reason(verdict.reason), verdict.explanation)
        if verdict.consent.single_use and not await self._consents.spend(verdict.consent.id, now_us):
            raise GatewayError(Reason.CONSENT_SPENT)

    @staticmethod
    def _timeout(registry: Registry, ctx: CallContext, started: float) -> float:
        timeout = registry.timeout_s
        if ctx.timeout_s is not None:
            left = ctx.timeout_s - (time.perf_counter() - started) - _DEADLINE_MARGIN_S
            timeout = min(timeout, left)
        if timeout <= 0:
            raise GatewayError(Reason.REGISTRY_TIMEOUT, "The caller's deadline leaves no time for the registry")
        return timeout

    async def _record(
        self, op: Operation, ctx: CallContext, trail: _Trail, reason: Reason | None, started: float
    ) -> None:
        if reason is None:
            outcome = Outcome.OK
        else:
            outcome = Outcome.ERROR if reason in _FAILURES else Outcome.REFUSED
        record = AuditRecord(
            time_us=self._clock_us(),
            kind=EventKind.EXCHANGE,
            consumer=trail.consumer,
            service=op.full_name,
            purpose=ctx.purpose,
            legal_basis=trail.legal_basis,
            legal_reference=trail.legal_reference,
            subject=trail.subject,
            consent_id=trail.consent_id or ctx.consent_id,
            case_id=ctx.case_id,
            officer_id=ctx.officer_id,
            request_id=ctx.request_id,
            trace_id=ctx.trace_id,
            fields=trail.fields if reason is None else (),
            outcome=outcome,
            reason=str(reason or ""),
            latency_us=int((time.perf_counter() - started) * 1e6),
            protocol=ctx.protocol,
            ai_system=ctx.ai_system,
            hidden_until_us=trail.hidden_until_us,
            hidden_reason=trail.hidden_reason,
        )
        try:
            await self._audit.append(record)
        except GatewayError:
            if reason is None:
                raise   # fail closed: the data does not leave
            # A refusal carries no data; the caller still gets the refusal.
        finally:
            self._observer.on_exchange(record, op.provider)
