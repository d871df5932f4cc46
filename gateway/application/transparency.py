"""The citizen's transparency use cases ("who accessed my data").

- ``GET /v1/me/accesses`` (``CitizenAccesses``, both doors): the citizen's accesses with filters and paging;
- ``GET /v1/me/accesses/{id}/proof``: an inclusion proof of one of them in the latest checkpoint;
- ``export_my_accesses``: the whole visible history (GDPR Art. 15 copy), served by the REST route
  ``GET /v1/me/accesses/export?format=json|csv`` (``gateway.entrypoints.routes_citizen``, beside the
  page at ``/me/`` and the demo sign-in).

The subject is always ``pseudonymise(token.sub)``; no parameter names a person.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from consent import LEGAL_BASES
from gateway._pb.passerelle.gateway.v1 import audit_pb2 as pb
from gateway.application.audit import checkpoint_message
from gateway.application.runtime import Gateway
from gateway.application.service import Access, Call, ServiceBinding
from gateway.config import Config
from gateway.core.audit_proof import PROOF_FORMAT, InclusionProof
from gateway.core.auth import Principal
from gateway.core.clock import now_us
from gateway.core.contracts import Operation
from gateway.core.errors import GatewayError, Reason
from gateway.core.export_safety import csv_text
from gateway.core.ports import AuditQuery
from gateway.core.transparency import (
    EXPORT_COLUMNS,
    AccessEntry,
    Catalogue,
    entry_of,
    export_row,
    iso_time,
    newest_first_page,
    page_token,
    parse_bound,
    parse_page_token_of,
    parse_sequence,
    split_embargo,
)
from gateway.core.types import StoredAuditRecord

__all__ = ["access_message", "catalogue_of", "citizen_binding", "export_my_accesses", "install_transparency",
           "proof_message"]

_CHUNK = 1000


def _legal_references(config: Config) -> dict[str, dict[str, str]]:
    """Each legal reference the configuration names per language (a mandate's before its purpose's)."""
    pairs = [(p.legal_reference, p.legal_reference_title) for p in config.purposes]
    pairs += [(m.legal_reference, m.legal_reference_title) for m in config.mandates]
    return {reference: dict(titles) for reference, titles in pairs if reference and titles}


def _answers(gateway: Gateway) -> dict[str, Operation]:
    """What can leave, by service: look-ups' answers and change events' payloads (notifications)."""
    return {**gateway.operations, **{name: s.payload for name, s in gateway.event_streams.items()}}


def catalogue_of(gateway: Gateway) -> Catalogue:
    config = gateway.config
    return Catalogue(
        agencies={c.id: c.display_name for c in config.consumers},
        agency_names={c.id: c.names for c in config.consumers},
        legal_references=_legal_references(config),
        purposes={p.code: dict(p.title) for p in config.purposes},
        legal_bases=dict(LEGAL_BASES),
        categories={name: op.field_categories for name, op in _answers(gateway).items()},
        display_names={name: op.field_display_names for name, op in _answers(gateway).items()},
    )


async def _records(
    gateway: Gateway, subject: str, *, since: str = "", until: str = "", consumer: str = "", purpose: str = ""
) -> list[StoredAuditRecord]:
    """Every record about ``subject`` matching the filters, ascending (a citizen's history is small)."""
    q = AuditQuery(
        subject=subject, consumer=consumer or None, purpose=purpose or None,
        since_us=parse_bound(since, name="since", end=False), until_us=parse_bound(until, name="until", end=True),
        limit=_CHUNK,
    )  # fmt: skip
    found: list[StoredAuditRecord] = []
    while True:
        chunk = list(await gateway.audit.query(q))
        found += [s for s in chunk if s.record.subject == subject]  # belt and braces: never another subject
        if len(chunk) < _CHUNK:
            return found
        q = AuditQuery(q.subject, q.consumer, q.purpose, q.since_us, q.until_us, chunk[-1].seq, _CHUNK)


def _subject(gateway: Gateway, call: Call) -> str:
    assert call.principal is not None and call.principal.kind == "citizen"
    subject = gateway.pseudonymise(call.principal.id)
    if not subject:
        raise GatewayError(Reason.TOKEN_INVALID, "The citizen token names no subject")
    return subject


def _localised(texts: Mapping[str, str]) -> pb.LocalisedText:
    return pb.LocalisedText(**{k: v for k, v in texts.items() if k in ("fr", "de", "en")})


def _data_fields(e: AccessEntry) -> list[pb.DataField]:
    """Each field that left, with its category and its names for people from the contract."""
    names = e.data_field_names or tuple({} for _ in e.data_fields)
    return [pb.DataField(name=n, category=c, display_name=_localised(d))
            for (n, c), d in zip(e.data_fields, names, strict=True)]


def access_message(e: AccessEntry) -> pb.Access:
    title = _localised(e.purpose_title)
    agency = pb.Agency(id=e.agency_id, name=e.agency_name, names=_localised(e.agency_names))
    return pb.Access(
        id=str(e.id), time=iso_time(e.time_us), agency=agency,
        service=e.service, data_fields=_data_fields(e),
        purpose=pb.PurposeInfo(code=e.purpose, title=title), legal_basis=e.legal_basis,
        legal_basis_title=e.legal_basis_title, legal_reference=e.legal_reference, consent_id=e.consent_id,
        outcome=e.outcome, reason=e.reason, reason_title=e.reason_title, ai_system=e.ai_system,
        record_hash=e.record_hash, subject_role=e.subject_role,
        legal_reference_title=_localised(e.legal_reference_title), bulk=e.bulk, notification=e.notification,
        changed_categories=list(e.changed_categories),
    )  # fmt: skip


def proof_message(proof: InclusionProof, public_key_pem: bytes) -> pb.AccessProof:
    return pb.AccessProof(
        format=PROOF_FORMAT, seq=proof.seq, record_hash=proof.record_hash, prev_hash=proof.prev_hash,
        canonical=proof.canonical, audit_path=[p.hex() for p in proof.audit_path],
        checkpoint=checkpoint_message(proof.checkpoint), public_key_pem=public_key_pem.decode(),
    )  # fmt: skip


def citizen_binding(gateway: Gateway) -> ServiceBinding:
    signer = gateway.checkpoint_signer

    async def list_accesses(request: pb.ListMyAccessesRequest, call: Call) -> pb.ListMyAccessesResponse:
        subject = _subject(gateway, call)
        before = parse_page_token_of(request.page_token, "before")   # newest first
        records = await _records(gateway, subject, since=request.since, until=request.until,
                                 consumer=request.consumer, purpose=request.purpose)  # fmt: skip
        visible, hidden = split_embargo(records, now_us())
        page = newest_first_page(visible, hidden, before=before, size=request.page_size, cat=catalogue_of(gateway))
        return pb.ListMyAccessesResponse(
            accesses=[access_message(e) for e in page.entries], hidden_count=page.hidden, total_count=page.total,
            next_page_token=page_token(page.next_after, "before") if page.next_after else "",
        )

    async def get_proof(request: pb.GetMyAccessProofRequest, call: Call) -> pb.AccessProof:
        subject = _subject(gateway, call)
        not_found = GatewayError(Reason.NOT_FOUND, "No such access in your history")
        # An audit sequence number: ASCII decimal ("²" and "١" pass isdigit), its length checked before
        # int() reads it (past 4300 digits int() raises), within int64 (beyond, no record can exist).
        if not (request.id.isascii() and request.id.isdigit()):
            raise GatewayError(Reason.INVALID_ARGUMENT, "id must be an ASCII decimal number", field="id")
        seq = parse_sequence(request.id)
        if seq < 0:
            raise not_found
        stored = await gateway.audit.get(seq)
        if stored is None or stored.record.subject != subject:  # another person's record looks absent
            raise not_found
        if not split_embargo([stored], now_us())[0]:
            raise not_found
        latest = await gateway.audit.latest_checkpoint()
        proof = None if latest is None else await gateway.proofs(stored.seq, latest)
        if proof is None:
            raise GatewayError(Reason.NOT_FOUND, "This access is not in a signed checkpoint yet; try again later")
        return proof_message(proof, signer.public_key_pem)

    return ServiceBinding(
        service="passerelle.gateway.v1.CitizenAccesses",
        handlers={"ListMyAccesses": list_accesses, "GetMyAccessProof": get_proof},
        access={"ListMyAccesses": Access("citizen"), "GetMyAccessProof": Access("citizen")},
        tags=["citizen"],
    )


# --- the GDPR Art. 15 copy (served by a REST route of the front door) ---------------------------------


def _export_body(entries: list[AccessEntry], hidden: int, fmt: str, now: int) -> tuple[str, str]:
    if fmt == "csv":   # every cell neutralised: agency-chosen text must not run as a spreadsheet formula
        return csv_text(EXPORT_COLUMNS, (export_row(e) for e in entries)), "text/csv; charset=utf-8"
    from google.protobuf import json_format

    body = {
        "generatedAt": iso_time(now),
        "hiddenCount": hidden,
        "accesses": [json_format.MessageToDict(access_message(e)) for e in entries],
    }
    return json.dumps(body, ensure_ascii=False, indent=2), "application/json"


async def export_my_accesses(
    gateway: Gateway, principal: Principal, *, fmt: str, since: str = "", until: str = ""
) -> tuple[str, str, str]:
    """The citizen's whole visible history as ``fmt`` (json or csv): (body, media type, file name)."""
    if fmt not in ("json", "csv"):
        raise GatewayError(Reason.INVALID_ARGUMENT, "format must be json or csv", field="format")
    subject = gateway.pseudonymise(principal.id)
    records = await _records(gateway, subject, since=since, until=until)
    now = now_us()
    visible, hidden = split_embargo(records, now)
    cat = catalogue_of(gateway)
    body, media = _export_body([entry_of(s, cat) for s in visible], hidden, fmt, now)
    return body, media, f"my-accesses-{iso_time(now)[:10]}.{fmt}"


async def install_transparency(gateway: Gateway) -> None:
    """The citizen API (``CitizenAccesses``); its REST-only routes are added by the composition root."""
    gateway.bindings.append(citizen_binding(gateway))
