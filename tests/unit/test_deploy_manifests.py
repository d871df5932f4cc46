"""The Kubernetes manifests in deploy/ are valid against the Kubernetes API schemas (offline)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.config import Config, cross_check

MANIFESTS = sorted((Path(__file__).parents[2] / "deploy" / "kubernetes").glob("*.yaml"))
K8S_VERSION = "1.30.0"  # the first with the preStop "sleep" action


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{p.name}#{i}", d) for p in MANIFESTS for i, d in enumerate(yaml.safe_load_all(p.read_text())) if d]


@pytest.mark.parametrize(("where", "doc"), documents(), ids=[w for w, _ in documents()])
def test_manifest_is_valid_kubernetes(where: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_gateway_has_grpc_and_http_probes() -> None:
    deployment = next(d for _, d in documents() if d["kind"] == "Deployment" and "gateway" in d["metadata"]["name"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["grpc"]["port"] == 50051
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_gateway_configuration_in_the_configmap_is_valid() -> None:
    config_map = next(
        d for _, d in documents() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "passerelle-gateway"
    )
    config = Config.model_validate(tomllib.loads(config_map["data"]["gateway.toml"]))
    assert cross_check(config) == []
    assert config.gateway.audit.startswith("postgresql://")
