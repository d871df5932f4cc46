"""The demo PKI: a CA, the gateway's TLS server certificate, one client certificate per demo consumer.

Used for gRPC over mutual TLS with certificate-bound tokens (RFC 8705). Real
deployments use their own PKI; only the file names in ``[gateway.tls]`` matter.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.core.cnf import cert_thumbprint
from gateway.demo._files import write_private

__all__ = ["DEMO_CLIENTS", "cert_file_thumbprint", "ensure_demo_pki", "issue_certificate", "make_ca"]

DEMO_CLIENTS = ("cedies", "procurement", "sandbox")
_DAYS = 825


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Passerelle demo"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(cn: str = "Passerelle demo CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_certificate(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, cn: str, *, server: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A leaf certificate: a server one (localhost, 127.0.0.1) or a client one."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    if private:
        write_private(path, data)
    else:
        path.write_bytes(data)


def ensure_demo_pki(keys: Path, clients: tuple[str, ...] = DEMO_CLIENTS) -> None:
    """Write ``tls/ca.pem``, ``tls/server.{pem,key}``, ``tls/<client>.{pem,key}`` unless present."""
    tls = keys / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    if not (tls / "ca.pem").exists() or not (tls / "ca.key").exists():
        new_key, new_cert = make_ca()
        _write(tls / "ca.key", _pem_key(new_key), private=True)
        _write(tls / "ca.pem", new_cert.public_bytes(serialization.Encoding.PEM))
    ca_key = serialization.load_pem_private_key((tls / "ca.key").read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((tls / "ca.pem").read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    for name, server in [("server", True), *((c, False) for c in clients)]:
        if (tls / f"{name}.pem").exists() and (tls / f"{name}.key").exists():
            continue
        key, cert = issue_certificate(ca_key, ca_cert, "localhost" if server else name, server=server)
        _write(tls / f"{name}.key", _pem_key(key), private=True)
        _write(tls / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))


def cert_file_thumbprint(path: Path) -> str:
    """``x5t#S256`` of a PEM certificate file: what a certificate-bound token's ``cnf`` carries."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert_thumbprint(cert.public_bytes(serialization.Encoding.DER))
