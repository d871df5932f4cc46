"""A real OpenID Provider (npm ``oidc-provider``, tests/browser/oidc/provider.mjs) in its own node process.

``missing()`` says why it cannot run here (no node, or ``npm ci --prefix tests/browser`` not run);
``sign_in_with_form`` drives the provider's own sign-in form over HTTP, as a browser would, and
returns the redirect back to the relying party (``...?code=...&state=...``) without following it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ACR_HIGH", "ACR_LOW", "ACR_SUBSTANTIAL", "OidcProviderProcess", "missing", "oidc_provider",
           "sign_in_with_form"]  # fmt: skip

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
SCRIPT = BROWSER_DIR / "oidc" / "provider.mjs"
ACR_LOW = "http://eidas.europa.eu/LoA/low"
ACR_SUBSTANTIAL = "http://eidas.europa.eu/LoA/substantial"
ACR_HIGH = "http://eidas.europa.eu/LoA/high"


def missing() -> str:
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs)"
    if not (BROWSER_DIR / "node_modules" / "oidc-provider").is_dir():
        return "oidc-provider is not installed (npm ci --prefix tests/browser)"
    return ""


@dataclass(frozen=True)
class OidcProviderProcess:
    issuer: str
    process: subprocess.Popen[str]


@contextmanager
def oidc_provider(clients: Sequence[Mapping[str, Any]], accounts: Mapping[str, Mapping[str, str]],
                  log: Path) -> Iterator[OidcProviderProcess]:  # fmt: skip
    """The provider on a free loopback port with these clients and accounts, stopped on exit."""
    env = dict(os.environ, OIDC_TEST_CONFIG=json.dumps({"clients": clients, "accounts": accounts}))
    with log.open("w") as err:
        proc = subprocess.Popen(["node", str(SCRIPT)], cwd=BROWSER_DIR, env=env, stdout=subprocess.PIPE,
                                stderr=err, text=True)  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("listening "):
                raise RuntimeError(f"oidc-provider did not start: {log.read_text()}")
            yield OidcProviderProcess(line.split()[1], proc)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


def sign_in_with_form(authorization_url: str, login: str, redirect_prefix: str,
                      client: httpx.Client | None = None) -> str:  # fmt: skip
    """The provider's sign-in form filled in with ``login``; the URL it sends the browser back to."""
    http = client or httpx.Client(timeout=10)
    url = authorization_url
    for _ in range(10):
        if url.startswith(redirect_prefix):
            return url
        r = http.get(url)
        if r.status_code in (302, 303):
            url = str(r.url.join(r.headers["location"]))
            continue
        action = _FORM_ACTION.search(r.text)
        assert action, f"no form at {url}: {r.status_code} {r.text[:300]}"
        r = http.post(r.url.join(action.group(1)), data={"prompt": "login", "login": login, "password": "x"})
        assert r.status_code in (302, 303), f"{r.status_code} {r.text[:300]}"
        url = str(r.url.join(r.headers["location"]))
    raise AssertionError("the provider never sent the browser back")
