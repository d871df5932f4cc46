"""The citizen's transparency API ("who accessed my data") and the page at ``/me/``.

- ``GET /v1/me/accesses`` (both doors): the citizen's accesses with filters and paging;
- ``GET /v1/me/accesses/{id}/proof``: an inclusion proof of one of them in the latest checkpoint;
- ``GET /v1/me/accesses/export?format=json|csv``: the whole visible history (GDPR Art. 15 copy);
- ``/me/``: the static web page (no build step, no CDN);
- demo only (``gateway serve --demo``): ``GET /v1/demo/citizens`` and ``POST /v1/demo/citizen-token``.

The subject is always ``pseudonymise(token.sub)``; no parameter names a person.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

from adapters.stores.audit_checkpoints import make_proof
from consent import LEGAL_BASES
from gateway._pb.passerelle.gateway.v1 import audit_pb2 as pb
from gateway.core.audit_proof import PROOF_FORMAT, InclusionProof
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
    page_of,
    page_token,
    parse_bound,
    parse_page_token,
    parse_sequence,
    split_embargo,
)
from gateway.core.types import StoredAuditRecord
from gateway.entrypoints._context import call_context, echo_id, refuse_bad_request_id
from gateway.entrypoints._request_url import request_url
from gateway.entrypoints._rest_mapping import json_body
from gateway.entrypoints.binding import Access, Call, ServiceBinding
from gateway.entrypoints.services.audit import checkpoint_message, signer_for

if TYPE_CHECKING:
    from gateway.bootstrap import Gateway

__all__ = ["install_transparency", "proof_message"]

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
_CHUNK = 1000
#: A page's CSP: everything from the gateway itself, nothing inline, no framing.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")  # fmt: skip


def catalogue_of(gateway: Gateway) -> Catalogue:
    config = gateway.config
    return Catalogue(
        agencies={c.id: c.name for c in config.consumers},
        purposes={p.code: dict(p.title) for p in config.purposes},
        legal_bases=dict(LEGAL_BASES),
        categories={name: op.field_categories for name, op in gateway.operations.items()},
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


def access_message(e: AccessEntry) -> pb.Access:
    title = pb.LocalisedText(**{k: v for k, v in e.purpose_title.items() if k in ("fr", "de", "en")})
    return pb.Access(
        id=str(e.id), time=iso_time(e.time_us), agency=pb.Agency(id=e.agency_id, name=e.agency_name),
        service=e.service, data_fields=[pb.DataField(name=n, category=c) for n, c in e.data_fields],
        purpose=pb.PurposeInfo(code=e.purpose, title=title), legal_basis=e.legal_basis,
        legal_basis_title=e.legal_basis_title, legal_reference=e.legal_reference, consent_id=e.consent_id,
        outcome=e.outcome, reason=e.reason, reason_title=e.reason_title, ai_system=e.ai_system,
        record_hash=e.record_hash, subject_role=e.subject_role,
    )  # fmt: skip


def proof_message(proof: InclusionProof, public_key_pem: bytes) -> pb.AccessProof:
    return pb.AccessProof(
        format=PROOF_FORMAT, seq=proof.seq, record_hash=proof.record_hash, prev_hash=proof.prev_hash,
        canonical=proof.canonical, audit_path=[p.hex() for p in proof.audit_path],
        checkpoint=checkpoint_message(proof.checkpoint), public_key_pem=public_key_pem.decode(),
    )  # fmt: skip


def citizen_binding(gateway: Gateway) -> ServiceBinding:
    from gateway.bootstrap import now_us

    signer = signer_for(gateway)

    async def list_accesses(request: pb.ListMyAccessesRequest, call: Call) -> pb.ListMyAccessesResponse:
        subject = _subject(gateway, call)
        after = parse_page_token(request.page_token)
        records = await _records(gateway, subject, since=request.since, until=request.until,
                                 consumer=request.consumer, purpose=request.purpose)  # fmt: skip
        visible, hidden = split_embargo(records, now_us())
        page = page_of(visible, hidden, after=after, size=request.page_size, cat=catalogue_of(gateway))
        return pb.ListMyAccessesResponse(
            accesses=[access_message(e) for e in page.entries], hidden_count=page.hidden, total_count=page.total,
            next_page_token=page_token(page.next_after) if page.next_after else "",
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
        proof = None if latest is None else await make_proof(gateway.audit, stored.seq, latest)
        if proof is None:
            raise GatewayError(Reason.NOT_FOUND, "This access is not in a signed checkpoint yet; try again later")
        return proof_message(proof, signer.public_key_pem)

    return ServiceBinding(
        service="passerelle.gateway.v1.CitizenAccesses",
        handlers={"ListMyAccesses": list_accesses, "GetMyAccessProof": get_proof},
        access={"ListMyAccesses": Access("citizen"), "GetMyAccessProof": Access("citizen")},
        tags=["citizen"],
    )


# --- REST-only routes: export, demo sign-in, the page ------------------------------------------------


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


_EXPORT_QUERY = ("format", "since", "until")


def _export_query(items: list[tuple[str, str]]) -> dict[str, str]:
    """The canonical mapping's rule for a hand-written route: declared parameters only, each at most once."""
    query: dict[str, str] = {}
    for key, value in items:
        if key not in _EXPORT_QUERY:
            raise GatewayError(Reason.INVALID_ARGUMENT, "A query parameter is not declared for this route",
                               field="query")
        if key in query:
            raise GatewayError(Reason.INVALID_ARGUMENT, f"{key} is given more than once", field=key)
        query[key] = value
    return query


def export_installer(gateway: Gateway) -> Any:
    from gateway.bootstrap import now_us

    async def export(request: Request) -> Response:
        ctx = call_context("rest", request.headers.get, None)
        ctx.http_method, ctx.http_url = request.method, request_url(request.scope)   # never the Host header
        ctx.dpop_proof = request.headers.get("dpop", "")
        try:
            refuse_bad_request_id(ctx)
            principal = await gateway.pipeline.authenticate_async(ctx, kind="citizen")
            query = _export_query(request.query_params.multi_items())
            fmt = query.get("format", "json")
            if fmt not in ("json", "csv"):
                raise GatewayError(Reason.INVALID_ARGUMENT, "format must be json or csv", field="format")
            subject = gateway.pseudonymise(principal.id)
            records = await _records(gateway, subject, since=query.get("since", ""), until=query.get("until", ""))
        except GatewayError as err:
            from gateway.entrypoints.rest import problem_response

            return problem_response(err, echo_id(ctx))
        now = now_us()
        visible, hidden = split_embargo(records, now)
        cat = catalogue_of(gateway)
        body, media = _export_body([entry_of(s, cat) for s in visible], hidden, fmt, now)
        name = f"my-accesses-{iso_time(now)[:10]}.{fmt}"
        headers = {"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store",
                   "x-request-id": echo_id(ctx)}  # fmt: skip
        return Response(body, media_type=media, headers=headers)

    def install(app: FastAPI) -> dict[str, Any]:
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        doc = {
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "format", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"}},
                {"name": "since", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "until", "in": "query", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "The copy", "content": {"application/json": {"schema": {"type": "object"}},
                                                               "text/csv": {"schema": {"type": "string"}}}},
                **{str(code): {"description": text, "content": problem}
                   for code, text in [(400, "Invalid request"), (401, "Not authenticated"), (403, "Refused"),
                                      (429, "Quota exceeded")]},
            },
        }  # fmt: skip
        app.add_api_route("/v1/me/accesses/export", export, methods=["GET"], tags=["citizen"],
                          summary="GDPR Art. 15 copy of my accesses (json or csv)", openapi_extra=doc)  # fmt: skip
        return {}

    return install


def demo_installer(gateway: Gateway) -> Any:
    """Demo-only sign-in: mints a short-lived citizen token from the demo eID issuer's key."""
    from gateway.core.identifiers import national_id_problem
    from gateway.demo.setup import demo_token

    data_dir = gateway.config.base_dir

    async def citizen_token(request: Request) -> Response:
        from gateway.entrypoints.rest import problem_response

        try:   # the same body rules as every JSON route (_rest_mapping.json_body): one reading or a refusal
            if request.query_params:
                raise GatewayError(Reason.INVALID_ARGUMENT, "A query parameter is not declared for this route",
                                   field="query")
            body = json_body(await request.body(), request.headers.get("content-type"),
                             request.headers.get("content-encoding")) or {}
        except GatewayError as err:
            return problem_response(err)
        value = body.get("nationalId", "")
        nid = value if isinstance(value, str) else ""
        problem = national_id_problem(nid)
        if problem:
            return problem_response(GatewayError(Reason.INVALID_ARGUMENT, "nationalId: " + problem, field="nationalId"))
        token = demo_token(data_dir, issuer_id="demo-citizens", subject=nid, scope="citizen", ttl_s=900)
        return JSONResponse({"token": token, "expiresIn": 900}, headers={"cache-control": "no-store"})

    async def info(request: Request) -> Response:
        return JSONResponse({"demo": True, "tokenTtlSeconds": 900})

    def install(app: FastAPI) -> dict[str, Any]:
        app.add_api_route("/v1/demo/citizen-token", citizen_token, methods=["POST"], tags=["demo"],
                          summary="DEMO ONLY: a 15-minute citizen token for a demo national id")  # fmt: skip
        app.add_api_route("/v1/demo", info, methods=["GET"], tags=["demo"], summary="DEMO ONLY: demo mode is on")
        return {}

    return install


class _Page(StaticFiles):
    """The static page with strict security headers."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers["content-security-policy"] = _CSP
        response.headers["x-content-type-options"] = "nosniff"
        response.headers["referrer-policy"] = "no-referrer"
        response.headers["cache-control"] = "no-cache"
        return response


def page_installer(app: FastAPI) -> dict[str, Any]:
    async def to_page(request: Request) -> Response:
        return RedirectResponse("/me/", status_code=308)

    app.add_api_route("/me", to_page, methods=["GET"], include_in_schema=False)
    app.mount("/me", _Page(directory=WEB_DIR, html=True), name="citizen-page")
    return {}


async def install_transparency(gateway: Gateway) -> None:
    """The citizen API, export, page and (demo mode only) the demo sign-in (a FEATURES entry)."""
    gateway.bindings.append(citizen_binding(gateway))
    gateway.rest_installers.append(export_installer(gateway))
    if gateway.config.gateway.demo:
        gateway.rest_installers.append(demo_installer(gateway))
    gateway.rest_installers.append(page_installer)
