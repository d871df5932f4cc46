"""Test helpers shared by the tiers: keys, tokens, a demo stack on free ports."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.core.auth import Issuer, TokenVerifier

AUDIENCE = "urn:passerelle:gateway"
AGENCY_ISS = "https://idp.test/agencies"

StubT = TypeVar("StubT")


class TestIssuer:
    """An in-memory ES256 identity provider."""

    __test__ = False

    def __init__(self, issuer: str = AGENCY_ISS, role: str = "agency", id: str = "test-agencies") -> None:
        self.id, self.issuer, self.role = id, issuer, role
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.kid = uuid.uuid4().hex[:12]

    def as_issuer(self) -> Issuer:
        return Issuer(self.id, self.issuer, self.role, frozenset({"ES256"}), {self.kid: self.private.public_key()})

    def token(self, sub: str, *, ttl: int = 300, now: float | None = None, **overrides: Any) -> str:
        now = time.time() if now is None else now
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": AUDIENCE, "sub": sub, "iat": int(now), "exp": int(now) + ttl,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm="ES256", headers={"kid": self.kid})


def verifier_for(issuers: list[TestIssuer], consumers: Mapping[tuple[str, str], str]) -> TokenVerifier:
    return TokenVerifier({i.id: i.as_issuer() for i in issuers}, consumers, audience=AUDIENCE, clock=time.time)


def grpc_stub(stub_class: Callable[[Any], StubT], channel: Any) -> StubT:
    """A generated gRPC client stub (``*_pb2_grpc.XStub``) on ``channel``.

    grpcio-tools writes ``*_pb2_grpc.py`` without annotations and without a ``.pyi``, so calling a stub class
    directly is an untyped call under mypy --strict; taking the class as a callable keeps that boundary here.
    """
    return stub_class(channel)
