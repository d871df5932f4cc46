"""A misbehaving OpenID Provider for refusal tests: it signs ID tokens that a real provider would not.

It serves discovery, a JWKS, an authorisation endpoint that answers at once (no form) and a token
endpoint whose ID token is spoiled as ``mode`` says: ``foreign-aud``, ``expired``, ``wrong-nonce``
(or ``good``). Runs on a free loopback port in a thread of the test process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import ECKey

__all__ = ["RogueProvider", "rogue_provider"]


@dataclass
class RogueProvider:
    issuer: str = ""
    client_id: str = ""
    subject: str = ""
    acr: str = ""
    mode: str = "good"
    key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", {"kid": "rogue", "alg": "ES256"}))
    nonces: dict[str, str] = field(default_factory=dict)   # code -> nonce of its sign-in

    def id_token(self, code: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": self.subject, "aud": self.client_id, "iat": now,
                                  "exp": now + 300, "nonce": self.nonces.get(code, ""), "acr": self.acr}  # fmt: skip
        if self.mode == "foreign-aud":
            claims["aud"] = "another-client"
        elif self.mode == "expired":
            claims |= {"iat": now - 3600, "exp": now - 1800}
        elif self.mode == "wrong-nonce":
            claims["nonce"] = "not-the-sign-in-nonce"
        return jwt.encode({"alg": "ES256", "kid": "rogue"}, claims, self.key)


def _handler(op: RogueProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _json(self, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/.well-known/openid-configuration":
                self._json({"issuer": op.issuer, "authorization_endpoint": f"{op.issuer}/authorize",
                            "token_endpoint": f"{op.issuer}/token", "jwks_uri": f"{op.issuer}/jwks"})  # fmt: skip
            elif url.path == "/jwks":
                self._json({"keys": [op.key.as_dict(private=False)]})
            elif url.path == "/authorize":
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                code = f"code-{len(op.nonces)}"
                op.nonces[code] = q.get("nonce", "")
                self.send_response(303)
                self.send_header("location", q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]}))
                self.send_header("content-length", "0")
                self.end_headers()
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            self._json({"access_token": "x", "token_type": "Bearer", "id_token": op.id_token(form.get("code", ""))})

    return Handler


@contextmanager
def rogue_provider(client_id: str, subject: str, acr: str) -> Iterator[RogueProvider]:
    op = RogueProvider(client_id=client_id, subject=subject, acr=acr)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(op))
    op.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield op
    finally:
        server.shutdown()
        server.server_close()
