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


def _secrets() -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: {**d.get("stringData", {}), **d.get("data", {})}
            for _, d in documents() if d["kind"] == "Secret"}  # fmt: skip


def _mounted_secret_keys() -> set[tuple[str, str | None]]:
    """(Secret, key) pairs the workloads use; key None for a whole Secret mounted as a volume."""
    out: set[tuple[str, str | None]] = set()
    for _, d in documents():
        if d["kind"] not in ("Deployment", "Job"):
            continue
        pod = d["spec"]["template"]["spec"]
        out |= {(v["secret"]["secretName"], None) for v in pod.get("volumes", []) if "secret" in v}
        for c in pod["containers"]:
            env = c.get("env", [])
            refs = [e["valueFrom"]["secretKeyRef"] for e in env if "secretKeyRef" in e.get("valueFrom", {})]
            out |= {(r["name"], r["key"]) for r in refs}
    return out


def test_every_mounted_secret_is_declared_with_its_keys() -> None:
    secrets = _secrets()
    for name, key in _mounted_secret_keys():
        assert name in secrets, f"Secret {name!r} is mounted but not declared"
        assert key is None or key in secrets[name], f"Secret {name!r} has no key {key!r}"


def test_no_secret_value_is_committed() -> None:
    assert {name: [k for k, v in keys.items() if v] for name, keys in _secrets().items()} == {
        name: [] for name in _secrets()
    }


def test_every_file_the_configuration_reads_from_the_keys_secret_is_a_key_of_it() -> None:
    config_map = next(
        d for _, d in documents() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "passerelle-gateway"
    )
    text = config_map["data"]["gateway.toml"]
    files = {line.split('"')[1].rsplit("/", 1)[1] for line in text.splitlines() if '"/etc/passerelle/keys/' in line}
    assert files and files <= set(_secrets()["passerelle-keys"])


def test_the_collector_has_a_pipeline_for_the_metrics_the_gateway_pushes() -> None:
    config_map = next(
        d for _, d in documents() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "otel-collector"
    )
    pipelines = yaml.safe_load(config_map["data"]["config.yaml"])["service"]["pipelines"]
    assert {"traces", "metrics"} <= set(pipelines)
    assert "otlp" in pipelines["metrics"]["receivers"]


def test_the_image_installs_the_wheel_built_in_a_first_stage() -> None:
    dockerfile = (Path(__file__).parents[2] / "deploy" / "Dockerfile").read_text()
    stages = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    runtime = dockerfile[dockerfile.rindex("\nFROM "):]
    assert "COPY --from=build /dist" in runtime and "pip install --no-cache-dir /dist/passerelle-" in runtime
    assert "codegen" not in runtime and "COPY gateway" not in runtime


def _pod(kind: str, component: str) -> dict[str, Any]:
    pod: dict[str, Any] = next(d for _, d in documents() if d["kind"] == kind
                               and d["metadata"]["labels"].get("app.kubernetes.io/component") == component)[
        "spec"]["template"]["spec"]
    return pod


def test_the_signing_keys_init_job_runs_init_pkcs11_on_the_gateways_config_token_and_volume() -> None:
    """What the gateway will look for (config, SoftHSM2 configuration, token folder) is what the Job wrote."""
    job, gateway = _pod("Job", "init-signing-keys"), _pod("Deployment", "gateway")
    script = job["containers"][0]["args"][0]
    assert "softhsm2-util --init-token" in script
    assert "gateway security init-pkcs11 --config /etc/passerelle/gateway.toml" in script

    def mounts(pod: dict[str, Any]) -> dict[str, str]:
        volumes = {v["name"]: v.get("configMap", v.get("persistentVolumeClaim", v.get("secret")))
                   for v in pod["volumes"]}  # fmt: skip
        return {m["mountPath"]: str(volumes[m["name"]]) for m in pod["containers"][0]["volumeMounts"]}

    def env(pod: dict[str, Any]) -> dict[str, str]:
        return {e["name"]: e.get("value", "") for e in pod["containers"][0]["env"]}

    assert mounts(gateway).items() <= mounts(job).items()
    assert env(job)["SOFTHSM2_CONF"] == env(gateway)["SOFTHSM2_CONF"] in mounts(job)
    softhsm = next(d for _, d in documents()
                   if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "passerelle-softhsm")  # fmt: skip
    tokendir = next(line.split("=")[1].strip() for line in softhsm["data"]["softhsm2.conf"].splitlines()
                    if line.startswith("directories.tokendir"))
    assert tokendir.startswith("/var/lib/passerelle/") and tokendir in script   # on the state volume, created


def test_the_state_volume_both_pods_mount_is_declared() -> None:
    claims = {d["metadata"]["name"] for _, d in documents() if d["kind"] == "PersistentVolumeClaim"}
    for pod in (_pod("Job", "init-signing-keys"), _pod("Deployment", "gateway")):
        used = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
        assert used and used <= claims


def test_no_shell_command_in_the_docs_continues_a_line_with_a_backslash_before_spaces() -> None:
    """``cmd \\   # comment`` escapes a space instead of the newline: the command stops there."""
    import re

    root = Path(__file__).parents[2]
    broken = []
    for doc in [root / "README.md", *(root / "deploy").rglob("*.md"), *(root / "docs").rglob("*.md")]:
        for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", doc.read_text(), re.S):
            broken += [f"{doc.name}: {line}" for line in block.splitlines() if re.search(r"\\[ \t]+(#|$)", line)]
    assert broken == []
