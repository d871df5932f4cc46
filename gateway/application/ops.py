"""The operations API: operational records for ops staff, manual submissions from portals."""

from __future__ import annotations

import base64
from collections.abc import Callable

from gateway._pb.passerelle.gateway.v1 import ops_pb2 as pb
from gateway.application.service import Access, Call, ServiceBinding
from gateway.core.errors import GatewayError, Reason
from gateway.core.identifiers import national_id_problem
from gateway.core.ops_records import ManualSubmission, OpsQuery, OpsRecord, OpsStore
from gateway.core.transparency import parse_bound, parse_page_token_of

__all__ = ["ops_binding", "parse_instant"]

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/@-")


def parse_instant(value: str, *, name: str, end: bool) -> int | None:
    """An RFC 3339 date or timestamp as epoch µs (``gateway.core.transparency.parse_bound``: one reading
    of caller dates for every API); a date as an end bound includes the whole day."""
    return parse_bound(value, name=name, end=end)


def _page_after(token: str) -> int:
    """The last id of the previous page: within int64, or INVALID_ARGUMENT (never an overflow in the store)."""
    return parse_page_token_of(token, "ops")


def _page_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"ops:{last_id}".encode()).decode().rstrip("=")


def _identifier(value: str, name: str) -> str:
    # A national id is never an identifier here: ops data holds no personal data.
    if len(value) > 128 or not set(value) <= _SAFE or national_id_problem(value) is None:
        raise GatewayError(Reason.INVALID_ARGUMENT, f"{name} must be an identifier", field=name)
    return value


def _query(r: pb.ListExchangesRequest) -> OpsQuery:
    if r.succeeded not in ("", "true", "false"):
        raise GatewayError(Reason.INVALID_ARGUMENT, "succeeded must be true, false or empty", field="succeeded")
    if r.page_size < 0 or r.page_size > 1000:
        raise GatewayError(Reason.INVALID_ARGUMENT, "page_size must be within 0..1000", field="page_size")
    return OpsQuery(
        since_us=parse_instant(r.since, name="since", end=False),
        until_us=parse_instant(r.until, name="until", end=True),
        consumer=_identifier(r.consumer, "consumer") or None,
        registry=_identifier(r.registry, "registry") or None,
        service=_identifier(r.service, "service") or None,
        succeeded=None if not r.succeeded else r.succeeded == "true",
        after_id=_page_after(r.page_token),
        limit=r.page_size or 100,
    )


def _message(r: OpsRecord) -> pb.OpsExchange:
    return pb.OpsExchange(
        id=r.id,
        request_in_us=r.request_in_us,
        request_out_us=r.request_out_us,
        response_in_us=r.response_in_us,
        response_out_us=r.response_out_us,
        registry_duration_us=r.registry_us,
        consumer=r.consumer,
        provider=r.provider,
        registry=r.registry,
        service=r.service,
        service_version=r.service_version,
        protocol=r.protocol,
        purpose=r.purpose,
        request_id=r.request_id,
        trace_id=r.trace_id,
        request_bytes=r.request_bytes,
        response_bytes=r.response_bytes,
        registry_response_bytes=r.registry_response_bytes,
        succeeded=r.succeeded,
        fault_code=r.fault_code,
    )


def ops_binding(store: OpsStore, clock_us: Callable[[], int]) -> ServiceBinding:
    async def list_exchanges(request: pb.ListExchangesRequest, call: Call) -> pb.ListExchangesResponse:
        q = _query(request)
        records = await store.query(q)
        answer = pb.ListExchangesResponse(exchanges=[_message(r) for r in records], dropped=store.dropped)
        if len(records) == q.limit:
            answer.next_page_token = _page_token(records[-1].id)
        for s in await store.summary(q):
            answer.summary.add(
                registry=s.registry,
                consumer=s.consumer,
                exchanges=s.exchanges,
                failures=s.failures,
                registry_p50_us=s.registry_p50_us or 0,
                registry_p95_us=s.registry_p95_us or 0,
            )
        return answer

    async def submit(request: pb.ManualEvidence, call: Call) -> pb.ManualEvidenceReceipt:
        assert call.principal is not None
        if not 1 <= request.documents <= 1000:
            raise GatewayError(Reason.INVALID_ARGUMENT, "documents must be within 1..1000", field="documents")
        if not request.procedure:
            raise GatewayError(Reason.INVALID_ARGUMENT, "procedure is required", field="procedure")
        when = parse_instant(request.time, name="time", end=False) or clock_us()
        await store.add(
            ManualSubmission(
                time_us=when,
                consumer=call.principal.id,
                procedure=_identifier(request.procedure, "procedure"),
                documents=request.documents,
                case_id=_identifier(request.case_id, "case_id"),
            )
        )
        return pb.ManualEvidenceReceipt(consumer=call.principal.id, documents=request.documents)

    return ServiceBinding(
        service="passerelle.gateway.v1.Operations",
        handlers={"ListExchanges": list_exchanges, "SubmitManualEvidence": submit},
        access={"ListExchanges": Access("staff", "ops"), "SubmitManualEvidence": Access("consumer")},
        tags=["operations"],
    )
