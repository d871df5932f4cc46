"""``GET /.well-known/jwks.json``: the public key that signs consent receipts, for anyone to verify them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.responses import JSONResponse

from gateway.application.receipts import ReceiptSigner
from gateway.application.runtime import RestInstaller

__all__ = ["jwks_installer"]


def jwks_installer(signer: ReceiptSigner) -> RestInstaller:
    """A REST installer publishing the gateway's public signing key at ``/.well-known/jwks.json``."""

    def install(app: FastAPI) -> dict[str, Any]:
        async def jwks() -> JSONResponse:
            return JSONResponse(signer.jwks(), headers={"cache-control": "public, max-age=300"})

        app.add_api_route(
            "/.well-known/jwks.json",
            jwks,
            methods=["GET"],
            tags=["keys"],
            summary="The gateway's public signing keys (consent receipts)",
        )
        return {}

    return install
