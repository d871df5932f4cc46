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
    ttl: Annotated[int, typer.Option("--ttl", help="Lifetime in seconds (1 to 86400).")] = 900,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    config: Annotated[Path | None, typer.Option("--config", help="The demo set-up's configuration file; its "
                                                "folder is the data folder (instead of --data-dir).")] = None,
) -> None:
    """Print a demo agency token bound to a certificate or a DPoP key (its cnf claim)."""
    from gateway.core.dpop import key_thumbprint
    from gateway.demo.pki import cert_file_thumbprint
    from gateway.demo.setup import demo_token
    from gateway.entrypoints._cli_common import demo_folder as _demo_folder
    from gateway.entrypoints._cli_common import refuse as _refuse
    from gateway.entrypoints._cli_common import require_demo_set_up as _require_demo_set_up

    data_dir = _demo_folder(config, data_dir)
    _require_demo_set_up(data_dir)
    if (cnf_cert is None) == (dpop_key is None):
        raise _refuse("--cnf-cert, --dpop-key: give exactly one of --cnf-cert FILE or --dpop-key FILE")
    if not 1 <= ttl <= 86_400:
        raise _refuse(f"--ttl: {ttl} is not a lifetime in seconds (1 to 86400)")
    cnf = {"x5t#S256": cert_file_thumbprint(cnf_cert)} if cnf_cert else {"jkt": key_thumbprint(_private_key(dpop_key))}  # type: ignore[arg-type]
    typer.echo(demo_token(data_dir, issuer_id="demo-agencies", subject=consumer, scope="exchange", ttl_s=ttl,
                          extra={"cnf": cnf}))


@security_app.command("dpop-key")
def dpop_key(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Where to write the new P-256 private key (PEM).")],
) -> None:
    """Create a DPoP key pair for an agency client (keep the file private)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from gateway.demo._files import write_private as _write_private

    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(out, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    typer.echo(f"wrote {out}", err=True)


@security_app.command("dpop-proof")
def dpop_proof(
    key: Annotated[Path, typer.Option("--key", help="The DPoP private key (PEM).")],
    url: Annotated[str, typer.Option("--url", help="The full request URL.")],
    token: Annotated[str, typer.Option("--token", help="The access token the proof goes with.")],
    method: Annotated[str, typer.Option("--method", help="The request's HTTP method.")] = "GET",
) -> None:
    """Print a fresh DPoP proof for one request (its DPoP header). Valid once, for 60 seconds."""
    from gateway.core.dpop import make_proof

    typer.echo(make_proof(_private_key(key), method, url, token))


@security_app.command("errors-doc")
def errors_doc() -> None:
    """Print the reason-code table (docs/errors.md)."""
    from gateway.core.reason_table import reason_table_markdown

    typer.echo(reason_table_markdown(), nl=False)


@security_app.command("init-pkcs11")
def init_pkcs11(
    config: Annotated[Path | None, typer.Option("--config", help="Token settings from [gateway.keys].")] = None,
    module: Annotated[str, typer.Option("--module", help="PKCS#11 library.")] = "/usr/lib/softhsm/libsofthsm2.so",
    token_label: Annotated[str, typer.Option("--token-label", help="Label of the PKCS#11 token.")] = "passerelle",
    pin_file: Annotated[Path | None, typer.Option("--pin-file", help="File holding the user PIN.")] = None,
    pin_env: Annotated[str, typer.Option("--pin-env", help="Environment variable holding the user PIN.")] = "",
    checkpoint_label: Annotated[
        str, typer.Option("--checkpoint-label", help="Label of the Ed25519 checkpoint key.")
    ] = "passerelle-checkpoint",
    receipt_label: Annotated[
        str, typer.Option("--receipt-label", help="Label of the P-256 receipt key.")
    ] = "passerelle-receipt",
) -> None:
    """Generate the checkpoint key (Ed25519) and the receipt key (P-256) inside a PKCS#11 token.

    Both private keys are sensitive and non-extractable: they never leave the token. Prints the
    public keys, to publish and to pin in verifiers and witnesses. Refuses to overwrite a label.
    """
    import base64
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from adapters.keys._ec import p256_jwk
    from adapters.keys.pkcs11 import TokenSettings, generate_signing_keys
    from adapters.keys.signing import read_pin
    from gateway.config import ConfigError, load_config
    from gateway.entrypoints._cli_common import refuse as _refuse

    try:
        if config is not None:   # only [gateway.keys] matters here: its stores need not be reachable yet
            keys = load_config(config).gateway.keys
            module, token_label = keys.module, keys.token_label
            checkpoint_label, receipt_label = keys.checkpoint_key_label, keys.receipt_key_label
            pin = read_pin(keys.pin_file, keys.pin_env, config.resolve().parent)
        elif pin_file is not None or pin_env:
            pin = read_pin(str(pin_file or ""), pin_env, Path.cwd())
        else:
            raise _refuse("--pin-file, --pin-env: give one of them (or --config with [gateway.keys])")
    except ConfigError as exc:
        raise _refuse(str(exc)) from None
    except OSError as exc:   # read_pin: an unset variable, or a PIN file that cannot be read
        key = "gateway.keys.pin_file" if config is not None else "--pin-file"
        text = f"{key}: cannot read {exc.filename}: {exc.strerror}" if exc.strerror else str(exc)
        raise _refuse(text if config is not None else text.replace("gateway.keys.pin_env", "--pin-env")) from None
    try:
        checkpoint, receipt = generate_signing_keys(TokenSettings(module, token_label, pin),
                                                    checkpoint_label, receipt_label)
    except Exception as exc:  # a PKCS#11 error, a taken label, a missing token: one line, exit 2
        typer.echo(f"cannot generate the keys in token {token_label!r}: {type(exc).__name__} {exc}".strip(), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"checkpoint key {checkpoint_label!r} (Ed25519), raw base64: {base64.b64encode(checkpoint).decode()}")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    typer.echo(Ed25519PublicKey.from_public_bytes(checkpoint).public_bytes(serialization.Encoding.PEM, spki).decode(),
               nl=False)
    typer.echo(f"receipt key {receipt_label!r} (P-256, ES256) as JWK:")
    typer.echo(json.dumps(p256_jwk(receipt[1:33], receipt[33:]), indent=2))
