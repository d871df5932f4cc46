"""Revocations for staff (scope "admin"): tokens by ``jti``, consumers, signing keys; on both doors.

Each revocation and reinstatement is evidence (``_changes``): its effect is computed
from the store without changing it, recorded (actor, kind, ``sha256:`` of a token id
or the key id or consumer, reason, expiry, ``result``), and only then applied. A
reinstatement of something not revoked, or a revocation of something already revoked
at least as long, is recorded as ``no-op`` and changes nothing; revocations from the
configuration cannot be reinstated here (also ``no-op``). A revocation needs a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gateway._pb.passerelle.gateway.v1 import revocations_pb2 as pb
from gateway.application._changes import Change, apply_change, target_id
from gateway.application.runtime import Gateway
from gateway.application.service import Access, Call, ServiceBinding
from gateway.core.caller_text import free_text_problem
from gateway.core.errors import GatewayError, Reason
from gateway.core.revocation import KINDS, Revocation, RevocationList, RevocationStore

__all__ = ["RevocationSync", "revocations_binding"]

SERVICE = "passerelle.gateway.v1.Revocations"


class RevocationSync:
    """Keeps a process's ``RevocationList`` equal to the store plus the configuration's static list."""

    def __init__(self, store: RevocationStore, view: RevocationList, static: Iterable[Revocation],
                 clock_us: Callable[[], int]) -> None:
        self.store, self.view, self.static, self._clock_us = store, view, list(static), clock_us

    async def reload(self) -> None:
        self.view.replace([*self.static, *await self.store.active(self._clock_us())])

    async def poll(self, *, force: bool = False) -> None:
        if await self.store.changed() or force:
            await self.reload()


def _entry(r: Revocation) -> pb.RevocationEntry:
    return pb.RevocationEntry(kind=r.kind, value=r.value, reason=r.reason, created_us=r.created_us,
                              until_us=r.until_us, by=r.by)


def _validate(gateway: Gateway, kind: str, value: str, reason: str, *, reason_required: bool = True) -> None:
    if kind not in KINDS:
        raise GatewayError(Reason.INVALID_ARGUMENT, f"kind must be one of {', '.join(KINDS)}", field="kind")
    if not value or len(value) > 256:
        raise GatewayError(Reason.INVALID_ARGUMENT, "value must be 1 to 256 characters", field="value")
    if kind == "consumer" and value not in {c.id for c in gateway.config.consumers}:
        raise GatewayError(Reason.INVALID_ARGUMENT, "no such consumer", field="value")
    if reason_required and not reason.strip():
        raise GatewayError(Reason.INVALID_ARGUMENT, "reason is required: the log keeps why", field="reason")
    problem = free_text_problem(reason)
    if problem:
        raise GatewayError(Reason.INVALID_ARGUMENT, f"reason {problem}", field="reason")


#: A temporary revocation lasts at most this long (0 means for good); also keeps dates printable.
_LONGEST_TEMPORARY_US = 100 * 366 * 86_400_000_000


def _covering(active: Iterable[Revocation], kind: str, value: str, until_us: int) -> Revocation | None:
    """An active revocation of the same thing lasting at least as long as ``until_us`` (0: for good)."""
    for r in active:
        if r.kind == kind and r.value == value and (r.until_us == 0 or 0 < until_us <= r.until_us):
            return r
    return None


def revocations_binding(gateway: Gateway, sync: RevocationSync, clock_us: Callable[[], int]) -> ServiceBinding:
    async def revoke(request: pb.RevokeRequest, call: Call) -> pb.RevocationEntry:
        _validate(gateway, request.kind, request.value, request.reason)
        assert call.principal is not None
        now = clock_us()
        if request.until_us and request.until_us <= now:
            raise GatewayError(Reason.INVALID_ARGUMENT, "until_us must be in the future (or 0)", field="until_us")
        if request.until_us > now + _LONGEST_TEMPORARY_US:
            raise GatewayError(Reason.INVALID_ARGUMENT, "until_us is more than 100 years ahead; use 0 for good",
                               field="until_us")  # fmt: skip
        r = Revocation(request.kind, request.value, request.reason, now, max(0, request.until_us), call.principal.id)
        existing = _covering([*sync.static, *await sync.store.active(now)], r.kind, r.value, r.until_us)
        change = Change("revoke", r.kind, target_id(r.kind, r.value), r.reason, r.until_us,
                        result="no-op" if existing else "done")  # fmt: skip

        async def apply() -> None:
            await sync.store.add(r)
            sync.view.add(r)   # at once in this process; other processes on their next poll

        await apply_change(gateway.audit, clock_us, call, change, apply, service=f"{SERVICE}/Revoke",
                           consumer=r.value if r.kind == "consumer" else "")
        return _entry(existing or r)

    async def reinstate(request: pb.ReinstateRequest, call: Call) -> pb.ReinstateResponse:
        kind, value = request.kind, request.value
        _validate(gateway, kind, value, request.reason, reason_required=False)  # lifting a revocation: optional
        revoked = any(r.kind == kind and r.value == value for r in await sync.store.active(clock_us()))
        change = Change("reinstate", kind, target_id(kind, value), request.reason,
                        result="done" if revoked else "no-op")

        async def apply() -> bool:
            removed = await sync.store.remove(kind, value)
            await sync.reload()
            return removed

        removed = await apply_change(gateway.audit, clock_us, call, change, apply, service=f"{SERVICE}/Reinstate",
                                     effect=lambda done: "done" if done else "no-op",
                                     consumer=value if kind == "consumer" else "")
        return pb.ReinstateResponse(removed=bool(removed))

    async def list_revocations(request: pb.ListRevocationsRequest, call: Call) -> pb.ListRevocationsResponse:
        rows = [*sync.static, *await sync.store.active(clock_us())]
        return pb.ListRevocationsResponse(revocations=[_entry(r) for r in rows])

    admin = Access("staff", "admin")
    return ServiceBinding(
        service=SERVICE,
        handlers={"Revoke": revoke, "Reinstate": reinstate, "ListRevocations": list_revocations},
        access={"Revoke": admin, "Reinstate": admin, "ListRevocations": admin},
        tags=["admin"],
    )
