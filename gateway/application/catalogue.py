"""The service catalogue: what exists, and what the calling consumer's mandates allow."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from consent import allowed_fields, describe_limit
from gateway._pb.passerelle.gateway.v1 import catalogue_pb2 as pb
from gateway.application.runtime import Gateway
from gateway.application.service import Access, Call, ServiceBinding

__all__ = ["catalogue_binding"]


def _date(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).date().isoformat() if us else ""


def catalogue_binding(gateway: Gateway, clock_us: Callable[[], int]) -> ServiceBinding:
    """``ServiceCatalogue`` on both doors; ``clock_us`` (epoch µs) dates the limits it describes."""

    async def list_services(request: pb.ListServicesRequest, call: Call) -> pb.ListServicesResponse:
        assert call.principal is not None
        consumer = call.principal.id
        policy = gateway.pipeline.policy()
        now = clock_us()
        answer = pb.ListServicesResponse(consumer=consumer)
        for op in sorted(gateway.operations.values(), key=lambda o: o.full_name):
            info = answer.services.add(
                service=op.full_name, contract_version=op.version, provider=op.provider,
                rest_method=op.http_method, rest_path=op.http_path, subject_kind=op.subject_kind,
            )
            for f in op.response_fields:
                info.fields.add(name=f.name, json_name=f.json_name, category=f.category)
            for m in policy.mandates_of(consumer):
                if m.service == op.full_name:
                    info.mandates.add(
                        id=m.id, purposes=sorted(m.purposes), legal_basis=m.legal_basis,
                        legal_reference=m.legal_reference, needs_consent=m.needs_consent,
                        allowed_fields=sorted(allowed_fields(m, op.field_categories)),
                        valid_from=_date(m.valid_from_us), valid_until=_date(m.valid_until_us),
                        limits=[describe_limit(lim, now) for lim in m.limits], explicit_request=m.explicit_request,
                    )
        return answer

    return ServiceBinding(
        service="passerelle.gateway.v1.ServiceCatalogue",
        handlers={"ListServices": list_services},
        access={"ListServices": Access("consumer")},
        tags=["catalogue"],
    )
