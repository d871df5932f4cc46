"""Mandates managed at run time (``MandateAdmin``, staff tokens with the ``admin`` scope).

A change is validated against the contracts exactly like the configuration,
recorded in the audit log (``EventKind.ADMIN``: actor, action, mandate id, its
document and SHA-256, the admin's reason, expiry, result) before it is applied
(``_changes.apply_change``: no record, no change), persisted in the mandate store,
and takes effect at once here and within the store's poll interval on every other
instance.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from consent import LEGAL_BASES, Limit, Mandate, category_problem, limit_error, mandate_from_dict, mandate_to_dict
from gateway._pb.passerelle.gateway.v1 import admin_pb2 as pb
from gateway.application._changes import Change, apply_change
from gateway.application._timestamps import timestamp
from gateway.application.runtime import Gateway
from gateway.application.service import Access, Call, ServiceBinding
from gateway.core.caller_text import free_text_problem
from gateway.core.contracts import Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.ports import LiveMandates
from gateway.core.transparency import MAX_HIDDEN_DAYS
from gateway.core.types import MandateEntry

__all__ = ["mandate_admin_binding", "mandate_problems"]

SERVICE = "passerelle.gateway.v1.MandateAdmin"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def mandate_problems(
    m: Mandate, *, consumers: set[str], purposes: set[str], operations: Mapping[str, Operation]
) -> list[tuple[str, str]]:
    """(field, problem) pairs; empty when the mandate is consistent with the catalogue and contracts."""
    out: list[tuple[str, str]] = []
    if not _SAFE_ID.match(m.id):
        out.append(("id", "id must be 1-64 characters of A-Z a-z 0-9 . _ -"))
    if m.consumer not in consumers:
        out.append(("consumer", f"unknown consumer {m.consumer[:64]!r}"))
    if not m.purposes:
        out.append(("purposes", "a mandate names at least one purpose"))
    out += [("purposes", f"unknown purpose {p[:64]!r}") for p in sorted(m.purposes - purposes)]
    if m.legal_basis not in LEGAL_BASES:
        out.append(("legal_basis", f"unknown legal basis; one of {sorted(LEGAL_BASES)}"))
    if m.valid_until_us and m.valid_until_us <= m.valid_from_us:
        out.append(("valid_until", "must be after valid_from"))
    op = operations.get(m.service)
    if op is None:
        return [*out, ("service", f"no configured registry serves {m.service[:120]!r}")]
    cats = op.field_categories
    out += [("fields", f"{f[:64]!r} is not a field of the answer") for f in sorted(m.fields - set(cats))]
    out += [("categories", problem[:200]) for c in sorted(m.categories) if (problem := category_problem(c, cats))]
    if not m.fields and not m.categories:
        out.append(("fields", "a mandate must allow some fields or categories"))
    out += [("limits", p) for p in _limit_problems(m.limits, op)]
    return out


def _limit_problems(limits: tuple[Limit, ...], op: Operation) -> list[str]:
    out = []
    request_fields = op.request_descriptor.fields_by_name
    for lim in limits:
        problem = limit_error(lim)
        if problem:
            out.append(problem)
        elif lim.field not in request_fields:
            out.append(f"{lim.field[:64]!r} is not a request field of {op.full_name}")
    return out


_ts = timestamp
T = TypeVar("T")


def _check_reason(reason: str) -> None:
    problem = free_text_problem(reason)
    if problem:
        raise GatewayError(Reason.INVALID_ARGUMENT, f"reason {problem}", field="reason")


def to_proto(e: MandateEntry) -> pb.Mandate:
    d = mandate_to_dict(e.mandate)
    limits = [pb.MandateLimit(**x) for x in d.pop("limits")]
    return pb.Mandate(**d, limits=limits, origin=e.origin, updated_at=_ts(e.updated_us), updated_by=e.updated_by)


def from_proto(m: pb.Mandate) -> Mandate:
    """The mandate a request describes; values the configuration would refuse are refused here too."""
    if not 0 <= m.hidden_days <= MAX_HIDDEN_DAYS:
        raise GatewayError(Reason.INVALID_ARGUMENT, f"hiddenDays must be within 0..{MAX_HIDDEN_DAYS}",
                           field="hidden_days")
    for name, value in (("valid_from", m.valid_from), ("valid_until", m.valid_until)):
        if value and _DATE.fullmatch(value) is None:   # date.fromisoformat also reads 20240101, 2024-W01-1 ...
            raise GatewayError(Reason.INVALID_ARGUMENT, "validFrom and validUntil are dates: YYYY-MM-DD", field=name)
    try:
        return mandate_from_dict(
            {
                "id": m.id,
                "consumer": m.consumer,
                "service": m.service,
                "purposes": list(m.purposes),
                "legal_basis": m.legal_basis,
                "legal_reference": m.legal_reference,
                "fields": list(m.fields),
                "categories": list(m.categories),
                "valid_from": m.valid_from,
                "valid_until": m.valid_until,
                "hidden_days": m.hidden_days,
                "hidden_reason": m.hidden_reason,
                "limits": [{"field": x.field, "op": x.op, "values": list(x.values)} for x in m.limits],
                "consent_required": m.consent_required,
                "explicit_request": m.explicit_request,
            }
        )
    except (ValueError, OverflowError):
        raise GatewayError(
            Reason.INVALID_ARGUMENT, "validFrom and validUntil are dates: YYYY-MM-DD", field="valid_from"
        ) from None


class _Admin:
    def __init__(self, gateway: Gateway, live: LiveMandates, clock_us: Callable[[], int]) -> None:
        self.gw, self.live, self.clock_us = gateway, live, clock_us

    def _entry(self, mandate_id: str) -> MandateEntry:
        entry = self.live.entry(mandate_id)
        if entry is None:
            raise GatewayError(Reason.NOT_FOUND, "No mandate with this id")
        return entry

    async def list(self, req: pb.ListMandatesRequest, call: Call) -> pb.ListMandatesResponse:
        entries = [e for e in self.live.entries() if not req.consumer or e.mandate.consumer == req.consumer]
        return pb.ListMandatesResponse(mandates=[to_proto(e) for e in entries])

    async def get(self, req: pb.GetMandateRequest, call: Call) -> pb.Mandate:
        return to_proto(self._entry(req.id))

    async def put(self, req: pb.Mandate, call: Call) -> pb.Mandate:
        assert call.principal is not None
        mandate = from_proto(req)
        problems = mandate_problems(
            mandate,
            consumers={c.id for c in self.gw.config.consumers},
            purposes=set(self.live.current().purposes),
            # A mandate may name a look-up or a change-event rpc (change notifications: its payload's fields).
            operations={**self.gw.operations, **{n: s.payload for n, s in self.gw.event_streams.items()}},
        )
        if problems:
            field, detail = problems[0]
            raise GatewayError(Reason.INVALID_ARGUMENT, f"{field}: {detail}", field=field)
        _check_reason(req.change_reason)
        action = "update" if self.live.entry(mandate.id) else "create"
        by, now = call.principal.id, self.clock_us()
        entry = await self._change(call, "PutMandate", mandate, action, req.change_reason,
                                   lambda: self.live.put(mandate, by=by, now_us=now))
        assert entry is not None   # a put is never a no-op
        return to_proto(entry)

    async def delete(self, req: pb.DeleteMandateRequest, call: Call) -> pb.Mandate:
        assert call.principal is not None
        _check_reason(req.reason)
        entry = self._entry(req.id)
        by, now = call.principal.id, self.clock_us()
        await self._change(call, "DeleteMandate", entry.mandate, "delete", req.reason,
                           lambda: self.live.delete(req.id, by=by, now_us=now))   # gone meanwhile: a follow-up no-op
        return to_proto(entry)

    async def _change(
        self, call: Call, method: str, m: Mandate, action: str, reason: str, apply: Callable[[], Awaitable[T]]
    ) -> T | None:
        import hashlib
        import json

        doc = json.dumps(mandate_to_dict(m), sort_keys=True, separators=(",", ":"))
        change = Change(action, "mandate", m.id, reason, m.valid_until_us)
        details = {"mandate_id": m.id, "mandate_sha256": hashlib.sha256(doc.encode()).hexdigest(), "mandate": doc}
        return await apply_change(
            self.gw.audit, self.clock_us, call, change, apply, details=details,
            effect=lambda done: "done" if done is not None else "no-op",
            service=f"{SERVICE}/{method}", consumer=m.consumer, purpose=",".join(sorted(m.purposes)),
            legal_basis=m.legal_basis, legal_reference=m.legal_reference,
        )


def mandate_admin_binding(gateway: Gateway, live: LiveMandates, clock_us: Callable[[], int]) -> ServiceBinding:
    svc = _Admin(gateway, live, clock_us)
    admin = Access("staff", "admin")
    return ServiceBinding(
        service=SERVICE,
        handlers={"ListMandates": svc.list, "GetMandate": svc.get, "PutMandate": svc.put, "DeleteMandate": svc.delete},
        access={"ListMandates": admin, "GetMandate": admin, "PutMandate": admin, "DeleteMandate": admin},
        tags=["admin"],
        print_defaults=True,
    )
