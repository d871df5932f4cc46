"""Recording changes (consents, mandates) in the audit log as ``EventKind.ADMIN`` records."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.core.ports import AuditLog
from gateway.core.types import AuditRecord, EventKind, Outcome
from gateway.entrypoints.binding import Call

__all__ = ["record_change"]


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
) -> None:
    """Append one change record; raises ``AUDIT_UNAVAILABLE`` so that an unrecorded change is not made."""
    principal = call.principal
    actor = f"{principal.kind}:{principal.id}" if principal and principal.kind != "citizen" else "citizen"
    await audit.append(
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
