"""Explainable decisions (``AccessCheck``): would a lookup be allowed, with which fields, and why not.

No registry is called and no data is returned. Agencies may ask about their own
consumer id, citizens about their own national id, staff (admin or ops scope)
about anything.

A check that names a data subject, made by an agency or staff member, is a probe:
its answer tells whether that person consented. It is recorded before the answer
leaves (no record, no answer: ``AUDIT_UNAVAILABLE``) with the subject's pseudonym,
so it appears in that person's history ("checked whether it could access ...",
``gateway.core.transparency``). The answer never names the consent (field 10 of
``CheckAccessResponse`` is reserved), and the recorded purpose is a catalogue code
or ``unknown``, never the caller's text.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from consent import explain_access
from gateway._pb.passerelle.gateway.v1 import access_pb2 as pb
from gateway.application._changes import record_change
from gateway.application.runtime import Gateway
from gateway.application.service import Access, Call, ServiceBinding
from gateway.core.auth import Principal
from gateway.core.caller_text import caller_id_problem, recorded_purpose
from gateway.core.contracts import Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.validation import format_problem

__all__ = ["access_check_binding"]

SERVICE = "passerelle.gateway.v1.AccessCheck"
_STAFF_SCOPES = frozenset({"admin", "ops"})


def _bad(field: str, detail: str) -> GatewayError:
    return GatewayError(Reason.INVALID_ARGUMENT, detail, field=field)


class _Checks:
    def __init__(self, gateway: Gateway, clock_us: Callable[[], int]) -> None:
        self.gw, self.clock_us = gateway, clock_us

    async def _principal(self, call: Call) -> Principal:
        """Any kind of principal, with the same checks as the binding's (sender constraint included)."""
        ctx = call.ctx
        try:
            principal = await self.gw.verifier.verify_async(ctx.token)
            await self.gw.verifier.check_sender_async(
                principal,
                token=ctx.token or "",
                cert_sha256=ctx.peer_cert_sha256,
                dpop_proof=ctx.dpop_proof,
                method=ctx.http_method,
                url=ctx.http_url,
            )
        except GatewayError as exc:
            self.gw.pipeline.record_security_event(exc.reason, ctx.protocol)
            raise
        return principal

    @staticmethod
    def _consumer(req: pb.CheckAccessRequest, p: Principal) -> str:
        if p.kind == "consumer":
            if req.consumer and req.consumer != p.id:
                raise GatewayError(Reason.WRONG_TOKEN_SCOPE, "An agency may check only its own access")
            return p.id
        if p.kind == "citizen" and req.subject != p.id:
            raise GatewayError(Reason.SUBJECT_MISMATCH, "A citizen may check only lookups about themselves")
        if p.kind == "staff" and not p.scopes & _STAFF_SCOPES:
            raise GatewayError(Reason.WRONG_TOKEN_SCOPE, "This operation needs the 'admin' or 'ops' scope")
        if not req.consumer:
            raise _bad("consumer", "consumer is required")
        return req.consumer

    def _request_fields(self, req: pb.CheckAccessRequest, op: Operation) -> dict[str, object] | None:
        known = op.request_descriptor.fields_by_name
        unknown = sorted(set(req.request) - set(known))
        if unknown:
            raise _bad("request", f"{unknown[0][:64]!r} is not a request field of {op.full_name}")
        today = datetime.fromtimestamp(self.clock_us() / 1e6, UTC).date()
        values: dict[str, object] = dict(req.request)
        if op.subject_field and req.subject:
            values[op.subject_field] = req.subject
        for name, value in values.items():
            fmt = op.formats.get(name)
            problem = format_problem(fmt, value, today=today) if fmt else None
            if problem:
                raise _bad("subject" if name == op.subject_field else "request", f"{name}: {problem}")
        return values if req.request else None  # no request named: limits are reported, not checked

    async def check(self, req: pb.CheckAccessRequest, call: Call) -> pb.CheckAccessResponse:
        principal = await self._principal(call)
        consumer = self._consumer(req, principal)
        op = self.gw.operations.get(req.service)
        if op is None:
            raise GatewayError(Reason.UNKNOWN_SERVICE, "service must name a registry operation: package.Service/Method")
        if not req.purpose:
            raise _bad("purpose", "purpose is required")
        problem = caller_id_problem(req.case_id)
        if problem:
            raise GatewayError(Reason.CALLER_FIELD_INVALID, f"case_id {problem}", field="case_id")
        request_fields = self._request_fields(req, op)
        subject = self.gw.pseudonymise(req.subject) if req.subject else ""
        consents = await self.gw.consents.for_subject(subject, consumer, req.purpose) if subject else ()
        policy = self.gw.pipeline.policy()
        language = req.language if req.language in ("fr", "de", "en") else "en"
        answer = explain_access(
            policy,
            consents,
            consumer=consumer,
            service=op.full_name,
            purpose=req.purpose,
            subject=subject,
            now_us=self.clock_us(),
            field_categories=op.field_categories,
            request_fields=request_fields,
            case_id=req.case_id,
            language=language,
        )
        if subject and principal.kind != "citizen":
            await record_change(
                self.gw.audit,
                self.clock_us,
                Call(principal, call.ctx),
                service=f"{SERVICE}/CheckAccess",
                consumer=consumer,
                purpose=recorded_purpose(req.purpose, policy.purposes),
                subject=subject,
                extra={"action": "access-check", "checked_service": op.full_name, "allowed": str(answer.allowed),
                       "answer": answer.reason},
            )
        m, purpose = answer.mandate, policy.purposes.get(req.purpose)
        return pb.CheckAccessResponse(
            allowed=answer.allowed,
            reason=answer.reason,
            explanation=answer.explanation,
            steps=answer.steps,
            mandate_id=m.id if m else "",
            legal_basis=m.legal_basis if m else "",
            legal_reference=m.legal_reference if m else "",
            fields=answer.fields,
            needs_consent=answer.needs_consent,
            purpose_title=purpose.title if purpose else {},
        )


def access_check_binding(gateway: Gateway, clock_us: Callable[[], int]) -> ServiceBinding:
    svc = _Checks(gateway, clock_us)
    # "public" at the binding: the handler authenticates, because agencies, citizens and staff may all ask.
    return ServiceBinding(
        service=SERVICE,
        handlers={"CheckAccess": svc.check},
        access={"CheckAccess": Access("public")},
        tags=["access-checks"],
        print_defaults=True,
    )
