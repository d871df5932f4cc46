"""Recording changes (mandates, revocations, consents) and probes in the audit log as ``EventKind.ADMIN`` records.

Administrative changes are evidence, so the design is *record, then apply*:

1. the service validates the request and computes the change's effect from the
   current state **without applying anything** (a ``Change``: action, what kind of
   thing, which one, reason, expiry, and ``result`` = ``done`` or ``no-op``);
2. ``apply_change`` appends one record stating all of that, with the actor; if the
   log cannot take it, nothing is changed and the caller gets ``AUDIT_UNAVAILABLE``;
3. only then is the change applied (``no-op`` changes are recorded, not applied).

One record per change, with its outcome already in it: no "intent" records to
pair with "outcome" records. The outcome was computed before applying, so two
cases need a second record, best effort, naming the first (``follows`` = its seq):
applying fails (``result=failed``), or a concurrent change got there first and
the effect differs (e.g. the revocation was already gone: ``result=no-op``).

Which one (``target``) is recorded so that an auditor can tell what changed
without the log becoming a store of secrets: a token id as ``sha256:<hex>`` of
the ``jti`` (``target_id``), a signing key by its key id, a consumer, mandate or
consent by its id. Caller identifiers from headers (case, request id) are checked
like the exchange pipeline's (``gateway.core.caller_text``) before anything is recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TypeVar

from gateway.application.service import Call
from gateway.core.caller_text import caller_id_problem
from gateway.core.errors import GatewayError, Reason
from gateway.core.ports import AuditLog
from gateway.core.types import AuditReceipt, AuditRecord, EventKind, Outcome

__all__ = ["Change", "apply_change", "record_change", "target_id"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Change:
    """What an administrative change will do, computed before it is applied."""

    action: str                # create, update, delete, revoke, reinstate, grant ...
    kind: str = ""             # what is changed: mandate, jti, consumer, key, consent
    target: str = ""           # which one (``target_id``)
    reason: str = ""           # the actor's reason (free text, checked by the service)
    until_us: int = 0          # when the change lapses; 0: until changed again
    result: str = "done"       # done | no-op (| failed, in a follow-up record)

    def fields(self) -> dict[str, str]:
        out = {"action": self.action, "result": self.result}
        if self.kind:
            out |= {"target_kind": self.kind, "target": self.target}
        if self.reason:
            out["change_reason"] = self.reason
        if self.until_us:
            out["until"] = datetime.fromtimestamp(self.until_us / 1e6, UTC).isoformat().replace("+00:00", "Z")
        return out


def target_id(kind: str, value: str) -> str:
    """How the log names a revoked thing: a token id only as its SHA-256, anything else as is."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest() if kind == "jti" else value


def _checked_headers(call: Call) -> None:
    for value, header in ((call.ctx.case_id, "x-case-id"), (call.ctx.request_id, "x-request-id")):
        problem = caller_id_problem(value)
        if problem:
            raise GatewayError(Reason.CALLER_FIELD_INVALID, f"{header} {problem}", field=header)


async def record_change(
    audit: AuditLog,
    clock_us: Callable[[], int],
    call: Call,
    *,
    service: str,
    consumer: str = "",
    purpose: str = "",
    legal_basis: str = "",
    legal_reference: str = "",
    subject: str = "",
    consent_id: str = "",
    extra: Mapping[str, str] | None = None,
) -> AuditReceipt:
    """Append one change record; raises ``AUDIT_UNAVAILABLE`` so that an unrecorded change is not made."""
    _checked_headers(call)
    principal = call.principal
    actor = f"{principal.kind}:{principal.id}" if principal and principal.kind != "citizen" else "citizen"
    return await audit.append(
        AuditRecord(
            time_us=clock_us(),
            kind=EventKind.ADMIN,
            consumer=consumer,
            service=service,
            purpose=purpose,
            legal_basis=legal_basis,
            legal_reference=legal_reference,
            subject=subject,
            consent_id=consent_id,
            case_id=call.ctx.case_id,
            officer_id="",
            request_id=call.ctx.request_id,
            trace_id=call.ctx.trace_id,
            fields=(),
            outcome=Outcome.OK,
            reason="",
            latency_us=0,
            protocol=call.ctx.protocol,
            extra={"actor": actor, **(extra or {})},
        )
    )


async def apply_change(
    audit: AuditLog,
    clock_us: Callable[[], int],
    call: Call,
    change: Change,
    apply: Callable[[], Awaitable[T]],
    *,
    service: str,
    effect: Callable[[T], str] | None = None,
    details: Mapping[str, str] | None = None,
    **record: str,
) -> T | None:
    """Record ``change``, then apply it (not when it is a no-op, which returns None).

    ``effect`` tells, from what ``apply`` returned, the result that actually happened; when
    it differs from the recorded one, a follow-up record says so. ``details`` are more fields
    of the first record (e.g. the mandate's document).
    """
    extra = {**(details or {}), **change.fields()}
    receipt = await record_change(audit, clock_us, call, service=service, extra=extra, **record)
    if change.result == "no-op":
        return None
    try:
        done = await apply()
    except Exception:
        await _follow_up(audit, clock_us, call, replace(change, result="failed"), receipt, service, record)
        raise
    actual = effect(done) if effect else change.result
    if actual != change.result:
        await _follow_up(audit, clock_us, call, replace(change, result=actual), receipt, service, record)
    return done


async def _follow_up(
    audit: AuditLog, clock_us: Callable[[], int], call: Call, change: Change, first: AuditReceipt, service: str,
    record: Mapping[str, str],
) -> None:
    extra = {**change.fields(), "follows": str(first.seq)}
    with suppress(GatewayError):   # the first record stands; the state itself shows what happened
        await record_change(audit, clock_us, call, service=service, extra=extra, **record)
