"""``gateway consent ...``: check a consent receipt against the gateway's published keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Consent receipts.", no_args_is_help=True)


_HOW_TO_PASS_KEYS = ("pass the gateway's key set with --jwks URL (its /.well-known/jwks.json) "
                     "or --jwks FILE (a saved copy of it)")


def _jwks(source: str) -> dict[str, object]:
    """The key set from a URL or a file; one line saying how to pass it when it cannot be had."""
    if source.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.get(source, timeout=10)
            response.raise_for_status()
            return response.json()  # type: ignore[no-any-return]
        except (httpx.HTTPError, ValueError) as exc:
            typer.echo(f"cannot get the key set from {source} ({type(exc).__name__}: {exc}): is the gateway "
                       f"running there? Otherwise {_HOW_TO_PASS_KEYS}", err=True)  # fmt: skip
            raise typer.Exit(2) from None
    try:
        return json.loads(Path(source).read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError) as exc:
        typer.echo(f"--jwks: cannot read a key set from {source}: {getattr(exc, 'strerror', None) or exc}; "
                   f"{_HOW_TO_PASS_KEYS}", err=True)  # fmt: skip
        raise typer.Exit(2) from None


@app.command("verify-receipt")
def verify_receipt_command(
    file: Annotated[Path, typer.Argument(help="A file holding the receipt (the JWS, or a consent record JSON).")],
    jwks: Annotated[
        str, typer.Option("--jwks", help="The gateway's key set: its JWKS URL, or a file holding a copy.")
    ] = "http://127.0.0.1:8080/.well-known/jwks.json",
) -> None:
    """Verify a consent receipt's signature and print its content; exit 1 if it does not verify."""
    from gateway.entrypoints.services.receipts import ReceiptError, verify_receipt

    try:
        text = file.read_text().strip()
    except OSError as exc:
        typer.echo(f"cannot read the receipt {file}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    if text.startswith("{"):
        text = json.loads(text).get("receipt", "")
    try:
        claims = verify_receipt(text, _jwks(jwks))
    except ReceiptError as exc:
        typer.echo(f"INVALID: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(claims, indent=2, ensure_ascii=False))
    typer.echo(f"VALID: receipt {claims.get('consentReceiptID')} signed by the gateway", err=True)
