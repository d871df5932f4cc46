"""``GET /v1/audit/checkpoint``: the latest signed checkpoint as C2SP note text, with its cosignatures.

A REST-only route (plain text, the form witnesses and verifiers read); the checkpoints' history and
consistency proofs are ``AuditCheckpoints``, served on both doors (``gateway.application.audit``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response

from gateway.application.audit import latest_cosigned_note
from gateway.application.runtime import Gateway, RestInstaller
from gateway.core.errors import GatewayError, Reason
from gateway.entrypoints._problem import PROBLEM_SCHEMA, problem_response

__all__ = ["note_installer"]

_NO_CHECKPOINT_YET = {
    "description": "No checkpoint signed yet",
    "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
}


def note_installer(gateway: Gateway) -> RestInstaller:
    """``GET /v1/audit/checkpoint``: the latest checkpoint as C2SP note text, with its cosignatures."""

    async def latest_note() -> Response:
        text = await latest_cosigned_note(gateway.audit)
        if text is None:
            return problem_response(GatewayError(Reason.NOT_FOUND, "No checkpoint has been signed yet"))
        return PlainTextResponse(text, media_type="text/plain; charset=utf-8")

    def install(app: FastAPI) -> dict[str, Any]:
        app.add_api_route("/v1/audit/checkpoint", latest_note, methods=["GET"], tags=["audit"],
                          summary="The latest signed checkpoint as a C2SP note, with witness cosignatures",
                          response_class=PlainTextResponse,
                          responses={404: _NO_CHECKPOINT_YET})
        return {}

    return install
