"""A demo stack for the security suite: TLS with client certificates, quotas, counting registries."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from google.protobuf.message import Message

from gateway.bootstrap import resolve_demo_addresses
from gateway.config import ConsumerSection, TlsSection, load_config
from gateway.core.pipeline import Registry
from gateway.core.ports import RegistryAdapter
from gateway.demo.data import DemoData, generate
from gateway.demo.registries import start_grpc_registry, start_tax_registry
from gateway.demo.setup import DEMO_AUDIENCE, DEMO_ISSUERS, ensure_demo
from gateway.entrypoints.server import RunningGateway, start_gateway

SEED = 20260101
#: ``procurement`` gets a tiny quota so that the quota tests can exceed it in a few calls.
PROCUREMENT_QUOTA = {"rate_per_s": 0.5, "burst": 3, "max_concurrent": 2}


@dataclass
class CountingRegistry:
    """Wraps a registry adapter and counts the calls that reach it."""

    inner: RegistryAdapter
    calls: int = 0

    async def call(
        self, method: str, request: Message, *, timeout: float, metadata: Sequence[tuple[str, str]]
    ) -> Message:
        self.calls += 1
        return await self.inner.call(method, request, timeout=timeout, metadata=metadata)

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class SecurityStack:
    data: DemoData
    data_dir: Path
    running: RunningGateway
    rest: httpx.AsyncClient
    channel: grpc.aio.Channel
    counters: list[CountingRegistry] = field(default_factory=list)

    @property
    def registry_calls(self) -> int:
        return sum(c.calls for c in self.counters)

    def security_count(self, reason: str, protocol: str) -> int:
        return self.running.gateway.security.counts.get((reason, protocol), 0)

    def signing_key(self, issuer_id: str = "demo-agencies") -> tuple[Any, str]:
        keys = self.data_dir / "keys"
        private = serialization.load_pem_private_key((keys / f"{issuer_id}.pem").read_bytes(), password=None)
        kid = json.loads((keys / f"{issuer_id}.jwks.json").read_text())["keys"][0]["kid"]
        return private, kid

    def claims(self, sub: str = "cedies", issuer_id: str = "demo-agencies", **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": DEMO_ISSUERS[issuer_id][0],
            "aud": DEMO_AUDIENCE,
            "sub": sub,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "scope": "exchange",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        sub: str = "cedies",
        *,
        issuer_id: str = "demo-agencies",
        signer: str | None = None,
        kid: str | None = None,
        **overrides: Any,
    ) -> str:
        """A token with these claims, signed by ``signer``'s key (default: the issuer's own)."""
        private, own_kid = self.signing_key(signer or issuer_id)
        headers = {"kid": kid if kid is not None else own_kid}
        return jwt.encode(self.claims(sub, issuer_id, **overrides), private, algorithm="ES256", headers=headers)

    def unsigned(self, header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])

    def tls_channel(self, client: str | None) -> grpc.aio.Channel:
        tls = self.data_dir / "keys" / "tls"
        creds = grpc.ssl_channel_credentials(
            (tls / "ca.pem").read_bytes(),
            (tls / f"{client}.key").read_bytes() if client else None,
            (tls / f"{client}.pem").read_bytes() if client else None,
        )
        return grpc.aio.secure_channel(f"localhost:{self.running.grpc_tls_port}", creds)


def _with_quota(c: ConsumerSection) -> ConsumerSection:
    return c.model_copy(update=PROCUREMENT_QUOTA) if c.id == "procurement" else c


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: Any) -> AsyncIterator[SecurityStack]:
    data = generate(SEED, persons=200)
    reg_server, grpc_port = await start_grpc_registry(data)
    tax, tax_port = await start_tax_registry(data)
    data_dir: Path = tmp_path_factory.mktemp("security")
    config = resolve_demo_addresses(load_config(ensure_demo(data_dir)), grpc_port, tax_port)
    tls = TlsSection(port=0, cert="keys/tls/server.pem", key="keys/tls/server.key", client_ca="keys/tls/ca.pem")
    config = config.model_copy(
        update={
            "gateway": config.gateway.model_copy(update={"tls": tls}),
            "consumers": [_with_quota(c) for c in config.consumers],
        }
    )
    running = await start_gateway(config, rest_port=0, grpc_port=0, tls_port=0)
    counters = []
    for name, r in list(running.gateway.registries.items()):
        counter = CountingRegistry(r.adapter)
        counters.append(counter)
        running.gateway.registries[name] = Registry(r.id, counter, r.timeout_s)
    rest = httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.rest_port}", timeout=10)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc_port}")
    try:
        yield SecurityStack(data, data_dir, running, rest, channel, counters)
    finally:
        await rest.aclose()
        await channel.close()
        await running.stop(1.0)
        await reg_server.stop(0)
        await tax.stop()
