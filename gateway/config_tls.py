"""``[gateway.tls]`` checked before the gRPC server sees it.

grpcio given a certificate it cannot parse or a key that does not match prints
C-core lines and fails with "Failed to bind"; here each file is parsed with
``cryptography`` first, and a problem is one line naming ``gateway.tls.<key>`` and
the path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.config import TlsSection

__all__ = ["tls_problems"]


def _pem(key: str, path: Path) -> tuple[bytes | None, str]:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        return None, f"{key}: {path} is a folder, not a file"
    except OSError as exc:
        return None, f"{key}: cannot read {path}: {exc.strerror}"
    return (data, "") if data else (None, f"{key}: {path} is empty")


def _certificates(key: str, path: Path) -> tuple[list[Any], str]:
    from cryptography import x509

    data, problem = _pem(key, path)
    if data is None:
        return [], problem
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        return [], f"{key}: {path} holds no PEM certificate"
    return certs, ""


def _public_bytes(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(public_key.public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip


def tls_problems(tls: TlsSection, resolve: Callable[[str], Path]) -> list[str]:
    """One line per unusable TLS file: unreadable, not PEM, or a key that does not match the certificate."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    cert_path, key_path = resolve(tls.cert), resolve(tls.key)
    certs, cert_problem = _certificates("gateway.tls.cert", cert_path)
    out = [cert_problem] if cert_problem else []
    data, key_problem = _pem("gateway.tls.key", key_path)
    if data is None:
        out.append(key_problem)
    else:
        try:
            private = load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            out.append(f"gateway.tls.key: {key_path} is not an unencrypted PEM private key")
        else:
            if certs and _public_bytes(private.public_key()) != _public_bytes(certs[0].public_key()):
                out.append(f"gateway.tls.key: {key_path} is not the private key of the certificate in {cert_path}")
    if tls.client_ca:
        _, ca_problem = _certificates("gateway.tls.client_ca", resolve(tls.client_ca))
        out += [ca_problem] if ca_problem else []
    return out
