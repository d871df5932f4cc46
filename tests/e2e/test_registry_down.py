"""A registry that cannot be reached: /readyz says so per registry, and a lookup to it is REGISTRY_UNAVAILABLE."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from gateway.bootstrap import resolve_demo_addresses
from gateway.config import Config, load_config
from gateway.demo.setup import demo_token, ensure_demo
from gateway.entrypoints.server import RunningGateway, start_gateway

SUBJECT = "1991062434054"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DownStack:
    data_dir: Path
    rest: httpx.AsyncClient

    def headers(self) -> dict[str, str]:
        token = demo_token(self.data_dir, issuer_id="demo-agencies", subject="cedies", scope="exchange")
        return {"authorization": f"Bearer {token}", "x-purpose": "student-aid"}


def _with_policy(config: Config, policy: str) -> Config:
    return config.model_copy(update={"gateway": config.gateway.model_copy(update={"readiness": policy})})


async def _stack(tmp_path: Path, policy: str) -> AsyncIterator[DownStack]:
    # Both demo registries point at ports nobody listens on.
    config = resolve_demo_addresses(load_config(ensure_demo(tmp_path)), _closed_port(), _closed_port())
    running: RunningGateway = await start_gateway(_with_policy(config, policy), rest_port=0, grpc_port=0)
    rest = httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.rest_port}", timeout=10)
    try:
        yield DownStack(tmp_path, rest)
    finally:
        await rest.aclose()
        await running.stop(1.0)


@pytest_asyncio.fixture
async def down(tmp_path: Path) -> AsyncIterator[DownStack]:
    async for stack in _stack(tmp_path, "all"):
        yield stack


@pytest_asyncio.fixture
async def down_ignored(tmp_path: Path) -> AsyncIterator[DownStack]:
    async for stack in _stack(tmp_path, "ignore-registries"):
        yield stack


async def test_readyz_is_503_and_names_each_unreachable_registry(down: DownStack) -> None:
    answer = await down.rest.get("/readyz")
    assert answer.status_code == 503
    report = answer.json()
    assert report["ready"] is False
    assert report["registries_ready"] is False
    assert {r["probe"] for r in report["registries"].values()} == {"unreachable"}
    assert report["audit"] == "ok"


async def test_a_lookup_to_an_unreachable_grpc_registry_is_registry_unavailable(down: DownStack) -> None:
    answer = await down.rest.get(f"/v1/population/persons/{SUBJECT}", headers=down.headers())
    assert answer.json()["reason"] == "REGISTRY_UNAVAILABLE"


async def test_a_lookup_to_an_unreachable_rest_registry_is_registry_unavailable(down: DownStack) -> None:
    """The tax registry speaks its own REST dialect; its lookups need the citizen's consent first."""
    citizen = demo_token(down.data_dir, issuer_id="demo-citizens", subject=SUBJECT, scope="citizen")
    consent = await down.rest.post(
        "/v1/me/consents",
        headers={"authorization": f"Bearer {citizen}"},
        json={"consumer": "cedies", "purpose": "student-aid"},
    )
    assert consent.status_code in (200, 201), consent.text
    answer = await down.rest.get(f"/v1/tax/income-certificates/{SUBJECT}/2024", headers=down.headers())
    assert answer.json()["reason"] == "REGISTRY_UNAVAILABLE"


async def test_the_ignore_registries_policy_keeps_the_gateway_ready(down_ignored: DownStack) -> None:
    answer = await down_ignored.rest.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["registries_ready"] is True


@pytest.mark.parametrize("policy", ["sometimes"])
def test_an_unknown_readiness_policy_is_a_configuration_error(tmp_path: Path, policy: str) -> None:
    from gateway.config import ConfigError

    path = ensure_demo(tmp_path)
    text = path.read_text().replace("[gateway]\n", f'[gateway]\nreadiness = "{policy}"\n', 1)
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"gateway\.readiness"):
        load_config(path)
