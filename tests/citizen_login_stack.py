"""A ``gateway serve`` process with ``[citizen_login]`` pointing at an OpenID Provider, for the sign-in tests.

The gateway's REST port is chosen before it starts (the provider must know the redirect URI); the
demo registries run beside it; the configuration is the demo one with a ``[citizen_login]`` section.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.gateway_process import GatewayProcess, demo_registries, start_gateway_process, write_config

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "LoginStack", "free_port", "gateway_with_login", "security_events",
           "session_cookie"]  # fmt: skip

CLIENT_ID = "passerelle-page"
CLIENT_SECRET = "a-long-test-secret-for-the-page-0123456789"
COOKIE = "passerelle-session"   # plain-HTTP loopback public_url: no Secure, so no __Host- prefix


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LoginStack:
    gateway: GatewayProcess
    data_dir: Path
    public_url: str

    @property
    def callback(self) -> str:
        return f"{self.public_url}/me/auth/callback"


def _section(issuer: str, public_url: str, acr: str, subject_claim: str) -> str:
    return (f'\n[citizen_login]\nissuer = "{issuer}"\nclient_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
            f'public_url = "{public_url}"\nsubject_claim = "{subject_claim}"\nacr_values = ["{acr}"]\n'
            'scopes = ["openid"]\n')  # fmt: skip


@contextmanager
def gateway_with_login(data_dir: Path, issuer: str, port: int, *, acr: str,
                       subject_claim: str = "sub") -> Iterator[LoginStack]:  # fmt: skip
    """The gateway on ``port`` (so that ``public_url`` is known to the provider before it starts)."""
    public_url = f"http://127.0.0.1:{port}"
    with demo_registries() as (g, t):
        config = write_config(data_dir, g, t)
        config.write_text(config.read_text() + _section(issuer, public_url, acr, subject_claim))
        gw = start_gateway_process(["--config", str(config)], data_dir / "gateway.log", timeout_s=60, rest_port=port)
        try:
            yield LoginStack(gw, data_dir, public_url)
        finally:
            gw.stop()


def session_cookie(response: httpx.Response) -> str:
    """The session id the gateway set (read from Set-Cookie, so no cookie jar rule can hide it)."""
    for value in response.headers.get_list("set-cookie"):
        found = re.match(rf"{COOKIE}=([^;]*)", value)
        if found and found.group(1):
            return found.group(1)
    return ""


def security_events(client: httpx.Client) -> dict[str, float]:
    """The gateway's security event counts by reason (REST door), from /metrics."""
    counts: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("passerelle_security_events") and 'protocol="rest"' in line:
            reason = re.search(r'reason="([^"]+)"', line)
            if reason:
                counts[reason.group(1)] = counts.get(reason.group(1), 0.0) + float(line.rsplit(" ", 1)[1])
    return counts
