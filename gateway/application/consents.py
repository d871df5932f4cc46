"""The citizen's consents (``ConsentService``): grant with a signed receipt, list, revoke.

The subject is always the citizen token's subject, stored only as its keyed
pseudonym. Every grant and revocation is recorded in the audit log before it
takes effect, and drops the cached look-ups it touches (see ``CachedConsentStore``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from consent import Consent, Mandate, Policy, Purpose, consent_status
from gateway._pb.passerelle.gateway.v1 import consent_pb2 as pb
from gateway.application._changes import Change, record_change
from gateway.application._timestamps import timestamp
from gateway.application.receipts import ReceiptSigner, receipt_claims
from gateway.application.runtime import Gateway
from gateway.application.service import Access, Call, ServiceBinding
from gateway.core.caller_text import fresh_caller_id
from gateway.core.errors import GatewayError, Reason

__all__ = ["ConsentDefaults", "consent_binding"]

SERVICE = "passerelle.gateway.v1.ConsentService"
_DAY_US = 86_400_000_000
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:/@-]{1,128}$")
LANGUAGES = ("fr", "de", "en")


@dataclass(frozen=True, slots=True)
class ConsentDefaults:
    """Documented defaults and bounds (docs/consent.md)."""

    recurring_days: int = 365
    single_use_days: int = 30
    max_days: int = 3 * 365
    max_categories: int = 32


_ts = timestamp


def _bad(field: str, detail: str) -> GatewayError:
    return GatewayError(Reason.INVALID_ARGUMENT, detail, field=field)


class _Consents:
    def __init__(
        self, gateway: Gateway, signer: ReceiptSigner, clock_us: Callable[[], int], defaults: ConsentDefaults
    ) -> None:
        self.gw, self.signer, self.clock_us, self.defaults = gateway, signer, clock_us, defaults
        self.consumer_names = {c.id: c.display_name for c in gateway.config.consumers}
        self.consumer_names_localised = {c.id: c.names for c in gateway.config.consumers}

    # --- answers ---------------------------------------------------------------------------------

    def record(self, c: Consent, policy: Policy, now_us: int) -> pb.ConsentRecord:
        purpose = policy.purposes.get(c.purpose)
        status = f"CONSENT_STATUS_{consent_status(c, now_us)}"   # the enum value by its name
        return pb.ConsentRecord(
            id=c.id,
            consumer=c.consumer,
            consumer_name=self.consumer_names.get(c.consumer, c.consumer),
            consumer_names=self.consumer_names_localised.get(c.consumer, {}),
            purpose=c.purpose,
            purpose_title=purpose.title if purpose else {},
            purpose_description=purpose.description if purpose else {},
            retention_days=purpose.retention_days if purpose else 0,
            categories=sorted(c.categories),
            status=status,
            granted_at=_ts(c.granted_us),
            expires_at=_ts(c.expires_us),
            revoked_at=_ts(c.revoked_us),
            used_at=_ts(c.used_us),
            single_use=c.single_use,
            receipt=c.extra.get("receipt", ""),
            procedure_id=c.procedure_id,
            legal_basis=c.extra.get("legal_basis", ""),
            legal_reference=c.extra.get("legal_reference", ""),
            services=json.loads(c.extra.get("services", "[]")),
        )

    # --- grant -----------------------------------------------------------------------------------

    def _covered(self, mandates: tuple[Mandate, ...]) -> frozenset[str]:
        """Data categories the consumer's consent-based mandates for this purpose can return."""
        out: set[str] = set()
        for m in mandates:
            op = self.gw.operations.get(m.service)
            cats = op.field_categories if op else {}
            # A qualified category (``managers.NAME``) is, to the citizen, the category itself.
            out |= {c.rpartition(".")[2] for c in m.categories} | {cats[f] for f in m.fields if cats.get(f)}
        return frozenset(out)

    def _checked(
        self, req: pb.GrantConsentRequest, nid: str, policy: Policy, now_us: int
    ) -> tuple[Purpose, tuple[Mandate, ...], frozenset[str], int]:
        if req.subject and req.subject != nid:
            raise GatewayError(Reason.SUBJECT_MISMATCH, "A citizen may grant consent only for themselves")
        if not req.consumer:
            raise _bad("consumer", "consumer is required")
        if req.consumer not in self.consumer_names:
            raise _bad("consumer", f"Unknown consumer '{req.consumer[:64]}'")
        if not req.purpose:
            raise _bad("purpose", "purpose is required")
        purpose = policy.purposes.get(req.purpose)
        if purpose is None:
            raise _bad("purpose", f"Purpose '{req.purpose[:64]}' is not in the purposes catalogue")
        mandates = policy.consent_mandates(req.consumer, req.purpose)
        if not mandates:
            raise GatewayError(
                Reason.NO_MANDATE,
                f"Consumer '{req.consumer}' holds no mandate for purpose "
                f"'{req.purpose}' that rests on consent; a consent would have no effect",
            )
        if all(m.explicit_request for m in mandates) and not req.procedure_id:
            raise _bad("procedure_id", "This consumer's mandates need an explicit request: give procedureId")
        if req.procedure_id and not _SAFE_ID.match(req.procedure_id):
            raise _bad("procedure_id", "procedureId must be 1-128 characters of A-Z a-z 0-9 . _ : / @ -")
        return purpose, mandates, self._categories(req, mandates), self._expiry(req, now_us)

    def _categories(self, req: pb.GrantConsentRequest, mandates: tuple[Mandate, ...]) -> frozenset[str]:
        covered = self._covered(mandates)
        if len(req.categories) > self.defaults.max_categories:
            raise _bad("categories", f"at most {self.defaults.max_categories} categories")
        asked = frozenset(req.categories)
        outside = sorted(asked - covered)
        if outside:
            raise _bad("categories", f"not covered by the consumer's mandates: {', '.join(outside)[:200]}")
        return asked or covered

    def _expiry(self, req: pb.GrantConsentRequest, now_us: int) -> int:
        if not req.HasField("expires_at"):
            short = req.single_use or req.procedure_id
            return now_us + (self.defaults.single_use_days if short else self.defaults.recurring_days) * _DAY_US
        expires: int = req.expires_at.ToMicroseconds()  # protobuf ships no type information
        if expires <= now_us:
            raise _bad("expires_at", "expiresAt is in the past")
        if expires > now_us + self.defaults.max_days * _DAY_US:
            raise _bad("expires_at", f"expiresAt is more than {self.defaults.max_days} days ahead")
        return expires

    async def grant(self, req: pb.GrantConsentRequest, call: Call) -> pb.ConsentRecord:
        assert call.principal is not None
        nid, now_us, policy = call.principal.id, self.clock_us(), self.gw.pipeline.policy()
        purpose, mandates, categories, expires = self._checked(req, nid, policy, now_us)
        language = req.language if req.language in LANGUAGES else "fr"
        basis = mandates[0]
        services = sorted({m.service for m in mandates})
        draft = Consent(
            id=fresh_caller_id("cns_"),   # an agency sends it back as x-consent-id
            subject=self.gw.pseudonymise(nid),
            consumer=req.consumer,
            purpose=req.purpose,
            categories=categories,
            granted_us=now_us,
            expires_us=expires,
            single_use=req.single_use,
            procedure_id=req.procedure_id,
        )
        receipt = self.signer.sign(
            receipt_claims(
                draft,
                purpose,
                issuer=self.signer.issuer,
                consumer_name=self.consumer_names[req.consumer],
                legal_basis=basis.legal_basis,
                legal_reference=basis.legal_reference,
                services=services,
                language=language,
            )
        )
        extra = {
            "receipt": receipt,
            "language": language,
            "legal_basis": basis.legal_basis,
            "legal_reference": basis.legal_reference,
            "services": json.dumps(services),
        }
        c = dataclasses.replace(draft, extra=extra)
        await record_change(
            self.gw.audit,
            self.clock_us,
            call,
            service=f"{SERVICE}/GrantConsent",
            consumer=c.consumer,
            purpose=c.purpose,
            legal_basis=basis.legal_basis,
            legal_reference=basis.legal_reference,
            subject=c.subject,
            consent_id=c.id,
            extra=Change("grant", "consent", c.id, until_us=c.expires_us).fields(),
        )
        await self.gw.consents.add(c)
        return self.record(c, policy, now_us)

    # --- list, revoke, purposes ------------------------------------------------------------------

    async def list(self, req: pb.ListConsentsRequest, call: Call) -> pb.ListConsentsResponse:
        assert call.principal is not None
        now_us, policy = self.clock_us(), self.gw.pipeline.policy()
        mine = await self.gw.consents.of_subject(self.gw.pseudonymise(call.principal.id))
        return pb.ListConsentsResponse(consents=[self.record(c, policy, now_us) for c in mine])

    async def revoke(self, req: pb.RevokeConsentRequest, call: Call) -> pb.ConsentRecord:
        assert call.principal is not None
        subject, now_us = self.gw.pseudonymise(call.principal.id), self.clock_us()
        c = await self.gw.consents.get(req.id) if _SAFE_ID.match(req.id) else None
        if c is None or c.subject != subject:  # someone else's consent is "not found", not "forbidden"
            raise GatewayError(Reason.NOT_FOUND, "You have no consent with this id")
        if not c.revoked_us:
            await record_change(
                self.gw.audit,
                self.clock_us,
                call,
                service=f"{SERVICE}/RevokeConsent",
                consumer=c.consumer,
                purpose=c.purpose,
                legal_basis=c.extra.get("legal_basis", ""),
                subject=subject,
                consent_id=c.id,
                extra=Change("revoke", "consent", c.id).fields(),
            )
            await self.gw.consents.revoke(c.id, subject, now_us)
            c = await self.gw.consents.get(c.id) or c
        return self.record(c, self.gw.pipeline.policy(), now_us)

    async def purposes(self, req: pb.ListPurposesRequest, call: Call) -> pb.ListPurposesResponse:
        policy = self.gw.pipeline.policy()
        return pb.ListPurposesResponse(
            purposes=[
                pb.PurposeEntry(
                    code=p.code,
                    title=p.title,
                    description=p.description,
                    legal_reference=p.legal_reference,
                    legal_url=p.legal_url,
                    retention_days=p.retention_days,
                )
                for p in sorted(policy.purposes.values(), key=lambda p: p.code)
            ]
        )


def consent_binding(
    gateway: Gateway, signer: ReceiptSigner, clock_us: Callable[[], int], defaults: ConsentDefaults | None = None
) -> ServiceBinding:
    svc = _Consents(gateway, signer, clock_us, defaults or ConsentDefaults())
    citizen = Access("citizen")
    return ServiceBinding(
        service=SERVICE,
        handlers={
            "GrantConsent": svc.grant,
            "ListConsents": svc.list,
            "RevokeConsent": svc.revoke,
            "ListPurposes": svc.purposes,
        },
        access={
            "GrantConsent": citizen,
            "ListConsents": citizen,
            "RevokeConsent": citizen,
            "ListPurposes": Access("public"),
        },
        tags=["consents"],
        print_defaults=True,
    )
