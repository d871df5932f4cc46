"""gRPC front-door security: TLS credentials, the caller's certificate thumbprint, the metadata cap."""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path
from typing import Any

import grpc

from gateway.core.cnf import cert_thumbprint
from gateway.core.errors import GatewayError, Reason
from gateway.core.pipeline import CallContext, ExchangePipeline
from gateway.entrypoints._context import repeated_single_valued

__all__ = ["MAX_METADATA_BYTES", "TRANSPORT_METADATA_BYTES", "admit_grpc_call", "grpc_tls", "peer_cert_sha256",
           "server_credentials"]

#: Our own cap on a call's metadata, answered HEADERS_TOO_LARGE in the error model (as on REST).
MAX_METADATA_BYTES = 16 * 1024
#: The transport's hard cap, above ours so that oversized calls reach us and get a reason code.
TRANSPORT_METADATA_BYTES = 128 * 1024


def server_credentials(cert: Path, key: Path, client_ca: Path | None) -> grpc.ServerCredentials:
    """TLS for the gRPC door; with ``client_ca``, every client must present a certificate it signed."""
    ca = client_ca.read_bytes() if client_ca else None
    return grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())], root_certificates=ca,
                                       require_client_auth=ca is not None)


@lru_cache(maxsize=1024)
def _thumbprint(pem: bytes) -> str:
    return cert_thumbprint(ssl.PEM_cert_to_DER_cert(pem.decode("ascii")))


def peer_cert_sha256(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """``x5t#S256`` of the verified client certificate, or '' on a connection without one."""
    pems = context.auth_context().get("x509_pem_cert")
    return _thumbprint(pems[0]) if pems else ""


def admit_grpc_call(pipeline: ExchangePipeline, context: grpc.aio.ServicerContext[Any, Any], ctx: CallContext) -> None:
    """Refuse oversized metadata and repeated single-valued keys (security events, as on REST),
    and record the client certificate's thumbprint."""
    metadata = context.invocation_metadata() or ()
    if sum(len(k) + len(v) for k, v in metadata) > MAX_METADATA_BYTES:
        pipeline.record_security_event(Reason.HEADERS_TOO_LARGE, "grpc")
        raise GatewayError(Reason.HEADERS_TOO_LARGE)
    repeated = repeated_single_valued(k for k, _ in metadata)
    if repeated is not None:
        pipeline.record_security_event(Reason.DUPLICATE_HEADER, "grpc")
        raise GatewayError(Reason.DUPLICATE_HEADER, f"The header {repeated} is given more than once")
    ctx.peer_cert_sha256 = peer_cert_sha256(context)


def grpc_tls(config: Any, port: int | None = None) -> tuple[grpc.ServerCredentials, int, bool] | None:
    """The ``tls`` argument of ``create_grpc_server`` from ``[gateway.tls]`` (None when absent)."""
    tls = config.gateway.tls
    if tls is None:
        return None
    creds = server_credentials(config.path(tls.cert), config.path(tls.key),
                               config.path(tls.client_ca) if tls.client_ca else None)
    return creds, tls.port if port is None else port, tls.plaintext
