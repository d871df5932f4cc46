"""Refusals on the REST door: RFC 9457 ``application/problem+json`` carrying the reason code.

``metadata`` holds exactly what the gRPC ``ErrorInfo.metadata`` holds (``claim``, ``field`` ...), so a
client reads the same facts about a refusal on either door.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from gateway.core.errors import REASONS, GatewayError, Reason

__all__ = ["PROBLEM_SCHEMA", "problem_response"]

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "reason"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "reason": {"type": "string", "enum": [str(r) for r in Reason]},
        "field": {"type": "string"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"},
                     "description": "The same members as the gRPC ErrorInfo metadata (claim, field ...)"},
        "requestId": {"type": "string"},
    },
}


def problem_response(
    err: GatewayError, request_id: str = "", instance: str = "", *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    info = REASONS[err.reason]
    body: dict[str, Any] = {
        "type": f"urn:passerelle:problem:{err.reason}",
        "title": info.title,
        "status": info.http,
        "detail": err.detail,
        "reason": str(err.reason),
    }
    # ``instance`` names the request, never the URL: paths hold national ids.
    if instance or request_id:
        body["instance"] = instance or f"urn:passerelle:request:{request_id}"
    if err.field:
        body["field"] = err.field
    if err.metadata:
        body["metadata"] = dict(err.metadata)
    extra = dict(headers or {})
    if request_id:
        body["requestId"] = request_id
        extra["x-request-id"] = request_id
    if err.retry_after is not None:
        extra["retry-after"] = str(max(1, round(err.retry_after)))
    if err.reason is Reason.DPOP_PROOF_INVALID:
        extra["www-authenticate"] = 'DPoP error="invalid_dpop_proof", algs="ES256 EdDSA PS256 RS256"'
    elif info.http == 401:
        extra["www-authenticate"] = 'Bearer error="invalid_token"'
    return JSONResponse(body, status_code=info.http, headers=extra, media_type="application/problem+json")
