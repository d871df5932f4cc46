"""The URL a REST request was sent to, as a DPoP proof's ``htu`` must name it, without the ``Host`` header."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["request_url"]


def request_url(scope: Mapping[str, Any]) -> str:
    """Scheme, the listening socket's address and the raw path (as sent); the query is dropped.

    The ``Host`` header is the client's to choose: a proof made for the attacker's host must not
    match. The verifier replaces this origin with ``[gateway] public_url`` when it is set (behind
    a proxy, clients name the proxy's URL).
    """
    host, port = scope.get("server") or ("127.0.0.1", 0)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    raw = scope.get("raw_path") or scope["path"].encode()
    path = raw.decode("latin-1").partition("?")[0]
    scheme = "https" if scope.get("scheme") == "https" else "http"
    return f"{scheme}://{host}:{port}{path}"
