"""``gateway consent ...``: check a consent receipt against the gateway's published keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Consent receipts.", no_args_is_help=True)


_HOW_TO_PASS_KEYS = ("pass the gateway's key set with --jwks URL (its /.well-known/jwks.json) "
                     "or --jwks FILE (a saved copy of it), or its configuration with --config FILE / --data-dir DIR")


def _local_jwks(config: Path | None, data_dir: Path | None) -> dict[str, object]:
    """The key set the gateway of this configuration publishes, read from its receipt key (file or token)."""
    from adapters.keys.signing import make_receipt_key
    from gateway.config import ConfigError, load_config

    path = config or (data_dir or Path(".gateway-demo")) / "gateway.toml"
    try:
        conf = load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    try:
        return {"keys": [make_receipt_key(conf).public_jwk]}
    except (OSError, ValueError, TypeError) as exc:
        typer.echo(f"{path}: gateway.keys: cannot read the receipt key: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None


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
    file: Annotated[Path, typer.Argument(
        metavar="FILE", help="A file holding the receipt (the JWS, or a consent record JSON).")],
    jwks: Annotated[
        str, typer.Option("--jwks", help="The gateway's key set: its JWKS URL, or a file holding a copy.")
    ] = "http://127.0.0.1:8080/.well-known/jwks.json",
    config: Annotated[Path | None, typer.Option(
        "--config", help="Take the key set from this gateway configuration's receipt key (instead of --jwks).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="Take the key set from the demo set-up in this folder (instead of --jwks).")] = None,
) -> None:
    """Verify a consent receipt's signature and print its content; exit 1 if it does not verify."""
    from gateway.application.receipts import ReceiptError, verify_receipt

    try:
        text = file.read_text().strip()
    except OSError as exc:
        typer.echo(f"cannot read the receipt {file}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    if text.startswith("{"):
        text = json.loads(text).get("receipt", "")
    try:
        keys = _local_jwks(config, data_dir) if config or data_dir else _jwks(jwks)
        claims = verify_receipt(text, keys)
    except ReceiptError as exc:
        typer.echo(f"INVALID: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(claims, indent=2, ensure_ascii=False))
    typer.echo(f"VALID: receipt {claims.get('consentReceiptID')} signed by the gateway", err=True)
