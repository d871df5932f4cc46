"""``gateway security ...``: sender-constrained demo tokens, DPoP keys and proofs, the error-code table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["security_app"]

security_app = typer.Typer(help="Tokens bound to a certificate or key, DPoP proofs, error codes.",
                           no_args_is_help=True)
DataDir = Annotated[Path, typer.Option("--data-dir", help="Folder for demo keys, config and stores.")]
DEFAULT_DATA_DIR = Path(".gateway-demo")


def _private_key(path: Path) -> object:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(path.read_bytes(), password=None)


@security_app.command("token")
def bound_token(
    consumer: Annotated[str, typer.Option("--consumer", help="Agency, e.g. cedies.")],
    cnf_cert: Annotated[Path | None, typer.Option("--cnf-cert", help="Bind to this client certificate (PEM): "
                                                  "for gRPC over mutual TLS (RFC 8705).")] = None,
    dpop_key: Annotated[Path | None, typer.Option("--dpop-key", help="Bind to this DPoP key (PEM private key): "
                                                  "for REST with DPoP proofs (RFC 9449).")] = None,
    ttl: Annotated[int, typer.Option("--ttl", help="Lifetime in seconds.")] = 900,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Print a demo agency token bound to a certificate or a DPoP key (``cnf``)."""
    from gateway.core.dpop import key_thumbprint
    from gateway.demo.pki import cert_file_thumbprint
    from gateway.demo.setup import demo_token

    if (cnf_cert is None) == (dpop_key is None):
        raise typer.BadParameter("give exactly one of --cnf-cert FILE or --dpop-key FILE")
    cnf = {"x5t#S256": cert_file_thumbprint(cnf_cert)} if cnf_cert else {"jkt": key_thumbprint(_private_key(dpop_key))}  # type: ignore[arg-type]
    typer.echo(demo_token(data_dir, issuer_id="demo-agencies", subject=consumer, scope="exchange", ttl_s=ttl,
                          extra={"cnf": cnf}))


@security_app.command("dpop-key")
def dpop_key(out: Annotated[Path, typer.Argument(help="Where to write the new P-256 private key (PEM).")]) -> None:
    """Create a DPoP key pair for an agency client (keep the file private)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from gateway.demo.setup import _write_private

    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(out, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    typer.echo(f"wrote {out}", err=True)


@security_app.command("dpop-proof")
def dpop_proof(
    key: Annotated[Path, typer.Option("--key", help="The DPoP private key (PEM).")],
    url: Annotated[str, typer.Option("--url", help="The full request URL.")],
    token: Annotated[str, typer.Option("--token", help="The access token the proof goes with.")],
    method: Annotated[str, typer.Option("--method")] = "GET",
) -> None:
    """Print a fresh DPoP proof for one request (header ``DPoP``). Valid once, for 60 seconds."""
    from gateway.core.dpop import make_proof

    typer.echo(make_proof(_private_key(key), method, url, token))


@security_app.command("errors-doc")
def errors_doc() -> None:
    """Print the reason-code table (docs/errors.md)."""
    from gateway.core.reason_table import reason_table_markdown

    typer.echo(reason_table_markdown(), nl=False)
