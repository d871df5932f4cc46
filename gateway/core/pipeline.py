"""The exchange: authenticate → validate → authorise → consent → adapter → minimise → audit → answer.

Every exchange by an authenticated consumer produces exactly one audit record,
allowed or refused, and no data leaves before its record is committed.
Refusals before authentication, and refusals by admission control (quotas:
nothing was asked of a registry), are security events, not exchange records,
so that a flood cannot flood the log.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime

from google.protobuf.message import Message
from opentelemetry import trace

from consent import Decision, Mandate, Policy, allowed_fields, check_consent
from gateway.core.auth import Principal, TokenVerifier
from gateway.core.caller_text import CALLER_HEADERS, UNKNOWN_PURPOSE, caller_id_problem, recorded_purpose
from gateway.core.contracts import Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.minimise import Disclosure, NestedPerson, disclosures, minimise, narrow, nested_people
from gateway.core.ports import AuditLog, ConsentStore, ExchangeObserver, RegistryAdapter, SecurityEvents
from gateway.core.pseudonym import Pseudonymiser
from gateway.core.quotas import Admission
from gateway.core.transparency import MAX_HIDDEN_DAYS
from gateway.core.types import AuditRecord, EventKind, ExchangeTiming, Outcome, SubjectRole
from gateway.core.validation import format_problem

__all__ = ["CallContext", "ExchangePipeline", "Registry", "third_party_request_id"]

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
_RECORD_FIELDS = tuple(f.name for f in dataclass_fields(AuditRecord))
#: Field sets remembered per (operation, mandate fields, mandate categories); cleared when full.
_ALLOWED_CACHE = 4096
#: Time kept back from the caller's deadline to record the exchange and answer.
_DEADLINE_MARGIN_S = 0.005
_tracer = trace.get_tracer("passerelle.pipeline")


def _scalar_fields(request: Message) -> dict[str, object]:
    """The request's scalar fields by name: what mandate limits are evaluated on."""
    out: dict[str, object] = {}
    for fd in request.DESCRIPTOR.fields:
        value = getattr(request, fd.name)
        if isinstance(value, str | int | float | bool):
            out[fd.name] = value
    return out


class _NoStage:
    """The stage of an exchange that is not sampled: nothing to record, nothing to make (a singleton)."""

    __slots__ = ()

    def __enter__(self) -> trace.Span:
        return trace.INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


_NO_STAGE = _NoStage()


def _stage(name: str, traced: bool | None = None) -> AbstractContextManager[trace.Span]:
    """A child span per pipeline stage; a refusal marks it with its reason code only (no message).

    When the exchange is not sampled (its server span does not record), no child span is made
    and no generator either: it would record nothing, and each costs microseconds on the hot path.
    ``traced``: whether it records, as the exchange found out once (``_Trail.traced``); None: look now.
    """
    if traced is None:
        traced = trace.get_current_span().is_recording()
    if not traced:
        return _NO_STAGE
    return _recorded_stage(name)


@contextmanager
def _recorded_stage(name: str) -> Iterator[trace.Span]:
    with _tracer.start_as_current_span(name, record_exception=False, set_status_on_exception=False) as span:
        try:
            yield span
        except GatewayError as exc:
            span.set_status(trace.StatusCode.ERROR, str(exc.reason))
            span.set_attribute("passerelle.reason", str(exc.reason))
            raise


def _outcome_of(reason: Reason | None) -> Outcome:
    if reason is None:
        return Outcome.OK
    return Outcome.ERROR if reason in _FAILURES else Outcome.REFUSED


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
    bulk: bool = False                 # an item of a bulk look-up: its records say so (extra["bulk"])


@dataclass(frozen=True, slots=True)
class Registry:
    """A configured registry: its adapter and the longest it may take.

    ``bulk_adapter``, where the contract offers a batch method, serves the items of bulk look-ups:
    it groups the calls made at about the same time into that method.
    """

    id: str
    adapter: RegistryAdapter
    timeout_s: float
    bulk_adapter: RegistryAdapter | None = None


@dataclass(slots=True)
class _Trail:
    """What the audit record will say, filled in as the exchange progresses.

    Caller-chosen values enter the trail only once checked (``_check_caller_values``): a refusal
    for a bad value records the refusal, never the value.
    """

    consumer: str
    #: Whether the exchange's span records (sampled): its stages make child spans. Looked up once per
    #: exchange (the current span does not change between its stages).
    traced: bool = False
    subject: str = ""
    purpose: str = ""                  # a catalogue code, UNKNOWN_PURPOSE or "" (none stated)
    case_id: str = ""
    officer_id: str = ""
    request_id: str = ""
    ai_system: str = ""
    legal_basis: str = ""
    legal_reference: str = ""
    consent_id: str = ""
    fields: tuple[str, ...] = ()
    disclosures: tuple[Disclosure, ...] = ()   # other persons whose data left (household members ...)
    hidden_until_us: int = 0
    hidden_reason: str = ""
    # What the decision used, for a bulk item's second look after its wait at the gate (_still_allowed).
    policy: Policy | None = None
    mandate: Mandate | None = None
    people: Sequence[NestedPerson] = ()
    consent_single_use: bool = False
    # For telemetry only (ExchangeTiming): the registry leg and message sizes.
    registry: str = ""
    registry_start_us: int = 0
    registry_end_us: int = 0
    request_bytes: int = 0
    registry_response_bytes: int = 0
    response_bytes: int = 0


def third_party_request_id(pseudonymise: Callable[[str], str], request_id: str, subject: str) -> str:
    """The opaque request id of a third party's record: keyed (the operator can relink it), unlinkable for others."""
    return "tp-" + pseudonymise(f"third-party request\n{request_id}\n{subject}")


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
        admission: Admission | None = None,
        ai_systems: Mapping[str, frozenset[str]] | None = None,
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
        self._admission = admission
        self._ai_systems: Mapping[str, frozenset[str]] = ai_systems or {}   # consumer -> registered AI systems
        self._allowed: dict[tuple[str, frozenset[str], frozenset[str]], frozenset[str]] = {}

    @property
    def admission(self) -> Admission | None:
        """Per-consumer quotas (shared between processes by ``gateway.quota_sync`` when configured)."""
        return self._admission

    def authenticate(self, ctx: CallContext, *, kind: str = "consumer") -> Principal:
        """Verify the bearer token and its sender binding; refusals here are security events."""
        try:
            return self._authorised_sender(self._verifier.verify(ctx.token), ctx, kind)
        except GatewayError as exc:
            self.record_security_event(exc.reason, ctx.protocol)
            raise

    async def authenticate_async(self, ctx: CallContext, *, kind: str = "consumer") -> Principal:
        """As ``authenticate``; an unknown signing key first refreshes the issuer's keys (rate-limited),
        and a DPoP proof's reuse is checked in the store shared by every process."""
        try:
            principal = await self._verifier.verify_async(ctx.token)
            await self._verifier.check_sender_async(
                principal, token=ctx.token or "", cert_sha256=ctx.peer_cert_sha256, dpop_proof=ctx.dpop_proof,
                method=ctx.http_method, url=ctx.http_url,
            )
            return self._of_kind(principal, kind)
        except GatewayError as exc:
            self.record_security_event(exc.reason, ctx.protocol)
            raise

    def check_still_authenticated(self, principal: Principal, protocol: str) -> None:
        """A long call's principal, again: revoked (token, consumer, key) or expired since the call began
        is refused (a security event, as at authentication)."""
        try:
            self._verifier.check_current(principal)
        except GatewayError as exc:
            self.record_security_event(exc.reason, protocol)
            raise

    def check_call_values(self, principal: Principal, ctx: CallContext, op: Operation | None = None) -> None:
        """The values of a call that are the same for all its items (purpose, caller ids, x-ai-system,
        and the field mask's names for ``op``), refused as a single call would refuse them: a bulk
        look-up asks once, before its stream starts, so that one bad header is one refusal, not a
        refusal record per item."""
        trail = _Trail(consumer=principal.id)
        self._check_caller_values(ctx, trail)
        self._check_purpose(ctx, trail)
        if op is not None:
            self._check_field_mask(op, ctx)

    def _authorised_sender(self, principal: Principal, ctx: CallContext, kind: str) -> Principal:
        self._verifier.check_sender(
            principal, token=ctx.token or "", cert_sha256=ctx.peer_cert_sha256, dpop_proof=ctx.dpop_proof,
            method=ctx.http_method, url=ctx.http_url,
        )
        return self._of_kind(principal, kind)

    @staticmethod
    def _of_kind(principal: Principal, kind: str) -> Principal:
        if principal.kind != kind:
            raise GatewayError(Reason.WRONG_TOKEN_SCOPE, f"This operation needs a {kind} token")
        return principal

    def record_security_event(self, reason: str, protocol: str) -> None:
        """For front doors refusing before the pipeline runs (oversized headers ...)."""
        self._security.record(reason, protocol)

    async def exchange(self, op: Operation, request: Message, ctx: CallContext) -> Message:
        started = time.perf_counter()
        with _stage("authenticate"):
            principal = await self.authenticate_async(ctx)
        return await self.exchange_as(principal, op, request, ctx, started=started)

    async def exchange_as(
        self, principal: Principal, op: Operation, request: Message, ctx: CallContext, *,
        started: float | None = None, before_record: Callable[[], Awaitable[None]] | None = None,
    ) -> Message:
        """The exchange for a principal already authenticated (a bulk look-up authenticates once).

        ``before_record`` is awaited just before the exchange is recorded, whatever its outcome: a
        bulk look-up waits there for its turn to write, so that a batch the client left is stopped
        (cancelled) before any record of an answer that would not be written. An answer that waited
        there is checked again before its record (``_still_allowed``: mandate and consent as now). The admission slot
        (``max_concurrent``) is released before that wait: the registry call is done, and an item
        waiting for a lower index's turn holding a slot would deadlock a consumer whose concurrency
        is below the batch's window.
        """
        started = time.perf_counter() if started is None else started
        admission = self._admission
        if admission is None:
            return await self._audited(op, request, ctx, principal, started, before_record)
        try:
            admission.acquire(principal.id, time.monotonic())
        except GatewayError as exc:
            self.record_security_event(exc.reason, ctx.protocol)
            raise
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                admission.release(principal.id)

        hook = before_record
        if before_record is not None:
            waits_for = before_record

            async def released_then_wait() -> None:
                # The admission slot is given back before waiting for the turn: an item that waits on
                # another (a bulk look-up's index order) must not hold a slot that other needs.
                release()
                await waits_for()

            hook = released_then_wait
        try:
            return await self._audited(op, request, ctx, principal, started, hook)
        finally:
            release()

    async def _audited(self, op: Operation, request: Message, ctx: CallContext, principal: Principal,
                       started: float, before_record: Callable[[], Awaitable[None]] | None) -> Message:
        trail = _Trail(consumer=principal.id, traced=trace.get_current_span().is_recording())
        try:
            response = await self._checked_call(op, request, ctx, trail, started)
            if before_record is not None:   # a bulk item: it waits for its turn, then looks again
                waits_for, before_record = before_record, None
                await waits_for()
                await self._still_allowed(op, request, ctx, trail, response)
        except GatewayError as exc:
            await self._record(op, ctx, trail, exc.reason, started, before_record)
            raise
        except Exception:
            # A bug or an adapter's unmapped failure is still an exchange: recorded as INTERNAL,
            # then re-raised for the front door to answer INTERNAL (without its text) and log it.
            await self._record(op, ctx, trail, Reason.INTERNAL, started, before_record)
            raise
        await self._record(op, ctx, trail, None, started, before_record)
        return response

    async def _checked_call(
        self, op: Operation, request: Message, ctx: CallContext, trail: _Trail, started: float
    ) -> Message:
        if op.subject_field:
            trail.subject = self._pseudonymise(getattr(request, op.subject_field))
        self._check_caller_values(ctx, trail)
        self._validate(op, request)
        self._check_purpose(ctx, trail)
        now_us = self._clock_us()
        with _stage("authorise", trail.traced):
            mandate = self._authorise(op, ctx, trail, now_us, request)
            wanted = self._fields_wanted(op, mandate, ctx)
        if mandate.needs_consent:
            with _stage("consent", trail.traced):
                needed = frozenset(op.field_categories[f] for f in wanted if op.field_categories.get(f))
                await self._check_consent(ctx, trail, now_us, mandate, needed)
        registry = self._registries.get(op.service)
        if registry is None:
            raise GatewayError(Reason.UNKNOWN_SERVICE)
        adapter = registry.bulk_adapter if ctx.bulk and registry.bulk_adapter is not None else registry.adapter
        timeout = self._timeout(registry, ctx, started)
        trail.registry, trail.request_bytes = registry.id, request.ByteSize()
        trail.registry_start_us = int((time.perf_counter() - started) * 1e6)
        try:
            with _stage("adapter call", trail.traced) as span:
                span.set_attribute("passerelle.registry", registry.id)
                answer = await adapter.call(op.method, request, timeout=timeout, metadata=ctx.metadata)
        finally:
            trail.registry_end_us = int((time.perf_counter() - started) * 1e6)
        trail.registry_response_bytes = answer.ByteSize()
        with _stage("minimise", trail.traced):
            people = nested_people(answer, op.nested_subjects) if op.nested_subjects else ()  # before: see minimise
            trail.people = people
            trail.fields = minimise(answer, wanted)
            trail.disclosures = disclosures(answer, people) if people else ()
        trail.response_bytes = answer.ByteSize()
        return answer

    async def _still_allowed(
        self, op: Operation, request: Message, ctx: CallContext, trail: _Trail, answer: Message
    ) -> None:
        """A bulk item, after its wait at the gate (as long as the client takes to read the groups before
        it): the mandate and the consent as a single call made now would find them. A mandate changed
        since the decision (another ``Policy`` snapshot) is decided again: refused, or the answer cut to
        what it allows now (what was cut stays cut); a consent revoked or expired meanwhile refuses.
        A one-exchange consent this item spent is its own and is not asked again."""
        now_us = self._clock_us()
        mandate = trail.mandate
        if self.policy() is not trail.policy:
            trail.legal_basis = trail.legal_reference = trail.hidden_reason = ""
            trail.hidden_until_us = 0
            mandate = self._authorise(op, ctx, trail, now_us, request)
            wanted = self._fields_wanted(op, mandate, ctx)
            trail.fields = minimise(answer, wanted)
            trail.disclosures = disclosures(answer, trail.people) if trail.people else ()
            trail.response_bytes = answer.ByteSize()
        if mandate is not None and mandate.needs_consent and not trail.consent_single_use:
            wanted = self._fields_wanted(op, mandate, ctx)
            needed = frozenset(op.field_categories[f] for f in wanted if op.field_categories.get(f))
            await self._check_consent(ctx, trail, now_us, mandate, needed)

    def _check_caller_values(self, ctx: CallContext, trail: _Trail) -> None:
        """Record the purpose only as a catalogue code; refuse caller identifiers that may not be recorded.

        The consent id is checked here but recorded only if the consent check used it (``_check_consent``).
        """
        trail.purpose = recorded_purpose(ctx.purpose, self.policy().purposes)
        for attr, header in CALLER_HEADERS:
            problem = caller_id_problem(getattr(ctx, attr))
            if problem:
                raise GatewayError(Reason.CALLER_FIELD_INVALID, f"{header} {problem}", field=header)
        if ctx.ai_system and ctx.ai_system not in self._ai_systems.get(trail.consumer, frozenset()):
            detail = "x-ai-system is not an AI system registered for this agency ([[consumers]] ai_systems)"
            raise GatewayError(Reason.CALLER_FIELD_INVALID, detail, field="x-ai-system")
        trail.case_id, trail.officer_id, trail.ai_system = ctx.case_id, ctx.officer_id, ctx.ai_system
        trail.request_id = ctx.request_id

    @staticmethod
    def _check_purpose(ctx: CallContext, trail: _Trail) -> None:
        if not ctx.purpose:
            raise GatewayError(Reason.PURPOSE_MISSING)
        if trail.purpose == UNKNOWN_PURPOSE:   # refused here, so that no message repeats the caller's text
            detail = "x-purpose is not a code of the purposes catalogue (GET /v1/purposes)"
            raise GatewayError(Reason.UNKNOWN_PURPOSE, detail, field="x-purpose")

    def _validate(self, op: Operation, request: Message) -> None:
        if op.subject_field and not getattr(request, op.subject_field):
            raise GatewayError(Reason.INVALID_ARGUMENT, f"{op.subject_field} is required", field=op.subject_field)
        today = datetime.fromtimestamp(self._clock_us() / 1e6, UTC).date()
        for name, fmt in op.formats.items():
            problem = format_problem(fmt, getattr(request, name), today=today)
            if problem:
                raise GatewayError(Reason.INVALID_ARGUMENT, f"{name}: {problem}", field=name)

    def _authorise(self, op: Operation, ctx: CallContext, trail: _Trail, now_us: int, request: Message) -> Mandate:
        policy = trail.policy = self.policy()
        decision: Decision = policy.decide(
            consumer=trail.consumer, service=op.full_name, purpose=ctx.purpose, now_us=now_us,
            request_fields=_scalar_fields(request),   # for the mandate's limits
        )
        if not decision.allowed or decision.mandate is None:
            raise GatewayError(Reason(decision.reason), decision.explanation)
        m = trail.mandate = decision.mandate
        trail.legal_basis, trail.legal_reference = m.legal_basis, m.legal_reference
        if m.hidden_days > 0:   # clamped: a mandate from an older store may hold any int
            trail.hidden_until_us = now_us + min(m.hidden_days, MAX_HIDDEN_DAYS) * 86_400_000_000
            trail.hidden_reason = m.hidden_reason
        return m

    def _fields_wanted(self, op: Operation, mandate: Mandate, ctx: CallContext) -> frozenset[str]:
        # allowed_fields is pure and depends on these three only: computed once per mandate version.
        key = (op.full_name, mandate.fields, mandate.categories)
        allowed = self._allowed.get(key)
        if allowed is None:
            if len(self._allowed) >= _ALLOWED_CACHE:
                self._allowed.clear()
            allowed = self._allowed[key] = allowed_fields(mandate, op.field_categories)
        if not ctx.field_mask:
            return allowed
        self._check_field_mask(op, ctx)
        by_any_name = op.json_paths   # field paths and proto3 JSON paths, dotted for nested fields
        return narrow(allowed, (by_any_name[n] for n in ctx.field_mask))

    @staticmethod
    def _check_field_mask(op: Operation, ctx: CallContext) -> None:
        """Every name of the field mask (x-fields, ?fields=) names a field of the operation's answer."""
        unknown = [n for n in ctx.field_mask if n not in op.json_paths]   # paths and proto3 JSON paths
        if unknown:
            raise GatewayError(Reason.INVALID_ARGUMENT, f"unknown field in field mask: {unknown[0]}", field="fields")

    async def _check_consent(
        self, ctx: CallContext, trail: _Trail, now_us: int, mandate: Mandate, needed: frozenset[str]
    ) -> None:
        candidates = await self._consents.for_subject(trail.subject, trail.consumer, ctx.purpose)
        verdict = check_consent(
            candidates,
            subject=trail.subject,
            consumer=trail.consumer,
            purpose=ctx.purpose,
            now_us=now_us,
            consent_id=ctx.consent_id,
            needed_categories=needed,
            case_id=ctx.case_id,
            explicit_only=mandate.explicit_request,
        )
        if verdict.consent is not None:
            trail.consent_id = verdict.consent.id
        if not verdict.allowed or verdict.consent is None:
            raise GatewayError(Reason(verdict.reason), verdict.explanation)
        if verdict.consent.single_use and not await self._consents.spend(verdict.consent.id, now_us):
            raise GatewayError(Reason.CONSENT_SPENT)
        trail.consent_single_use = verdict.consent.single_use

    def _third_party_records(self, record: AuditRecord, trail: _Trail) -> list[AuditRecord]:
        """A record in the history of each other person whose data left, with only their fields.

        Same agency, purpose and legal basis; nothing that points at the lookup's subject (their
        pseudonym, case or consent) and none of the exchange's ids: the request id is replaced by an
        opaque one derived under the pseudonym key (the operator can relink, nobody else) and there
        is no trace id, so two citizens' proofs cannot be matched by id. What still links them, the
        time and the adjacency in the chain, is in docs/audit-transparency.md (threat model).
        """
        if record.outcome is not Outcome.OK:
            return []
        base = {name: getattr(record, name) for name in _RECORD_FIELDS}   # dataclasses.replace, cheaper
        out = []
        for d in trail.disclosures:
            subject = self._pseudonymise(d.identifier)
            if not subject or subject == record.subject:
                continue
            extra = {**record.extra, "subject_role": SubjectRole.THIRD_PARTY.value, "disclosed_in": d.path}
            request_id = third_party_request_id(self._pseudonymise, record.request_id, subject)
            out.append(AuditRecord(**{**base, "subject": subject, "fields": d.fields, "consent_id": "", "case_id": "",
                                      "request_id": request_id, "trace_id": "", "extra": extra}))  # fmt: skip
        return out

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
        self, op: Operation, ctx: CallContext, trail: _Trail, reason: Reason | None, started: float,
        before_record: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if before_record is not None:
            await before_record()
        outcome = _outcome_of(reason)
        record = AuditRecord(
            time_us=self._clock_us(),
            kind=EventKind.EXCHANGE,
            consumer=trail.consumer,
            service=op.full_name,
            purpose=trail.purpose,
            legal_basis=trail.legal_basis,
            legal_reference=trail.legal_reference,
            subject=trail.subject,
            consent_id=trail.consent_id,    # only the consent the check used, never the caller's header
            case_id=trail.case_id,
            officer_id=trail.officer_id,
            request_id=trail.request_id,
            trace_id=ctx.trace_id,
            fields=trail.fields if reason is None else (),
            outcome=outcome,
            reason=str(reason or ""),
            latency_us=int((time.perf_counter() - started) * 1e6),
            protocol=ctx.protocol,
            ai_system=trail.ai_system,
            hidden_until_us=trail.hidden_until_us,
            hidden_reason=trail.hidden_reason,
            extra={"bulk": "1"} if ctx.bulk else {},
        )
        audit_started = time.perf_counter()
        try:
            with _stage("audit", trail.traced):
                others = self._third_party_records(record, trail)
                if others:   # submitted together: a group-committing store writes them in one transaction
                    await self._audit.append_all((record, *others))
                else:
                    await self._audit.append(record)
        except GatewayError:
            if reason is None:
                raise   # fail closed: the data does not leave
            # A refusal carries no data; the caller still gets the refusal.
        finally:
            timing = ExchangeTiming(
                trail.registry, trail.registry_start_us, trail.registry_end_us, trail.request_bytes,
                trail.registry_response_bytes, trail.response_bytes, int((time.perf_counter() - audit_started) * 1e6),
            )
            self._observer.on_exchange(record, op.provider, timing)
