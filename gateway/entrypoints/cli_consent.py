"""``gateway consent ...``: check a consent receipt against the gateway's published keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Consent receipts.", no_args_is_help=True)


def _jwks(source: str) -> dict[str, object]:
    if source.startswith(("http://", "https://")):
        import httpx

        response = httpx.get(source, timeout=10)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]
    return json.loads(Path(source).read_text())  # type: ignore[no-any-return]


@app.command("verify-receipt")
def verify_receipt_command(
    file: Annotated[Path, typer.Argument(help="A file holding the receipt (the JWS, or a consent record JSON).")],
    jwks: Annotated[
        str, typer.Option("--jwks", help="JWKS URL or file.")
    ] = "http://127.0.0.1:8080/.well-known/jwks.json",
) -> None:
    """Verify a consent receipt's signature and print its content; exit 1 if it does not verify."""
    from gateway.entrypoints.services.receipts import ReceiptError, verify_receipt

    text = file.read_text().strip()
    if text.startswith("{"):
        text = json.loads(text).get("receipt", "")
    try:
        claims = verify_receipt(text, _jwks(jwks))
    except ReceiptError as exc:
        typer.echo(f"INVALID: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(claims, indent=2, ensure_ascii=False))
    typer.echo(f"VALID: receipt {claims.get('consentReceiptID')} signed by the gateway", err=True)
