"""Configuration errors name the bad key; the error table is complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.core.errors import REASONS, Reason
from gateway.demo.setup import ensure_demo


def test_every_reason_has_a_grpc_code_and_an_http_status() -> None:
    assert set(REASONS) == set(Reason)
    assert all(400 <= info.http < 600 and info.title for info in REASONS.values())


def test_demo_configuration_is_valid(tmp_path: Path) -> None:
    config = load_config(ensure_demo(tmp_path))
    assert {m.id for m in config.mandates} >= {"cedies-person-student-aid", "procurement-company-check"}


def broken(tmp_path: Path, old: str, new: str) -> str:
    path = ensure_demo(tmp_path)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return str(exc.value)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'fields = ["given_names"',
            'fields = ["shoe_size", "given_names"',
            "mandates[0].fields: 'shoe_size' is not a field",
        ),
        ('legal_basis = "A6-1-e"', 'legal_basis = "A6-1-z"', "mandates[0].legal_basis"),
        ('consumer = "procurement"', 'consumer = "nobody"', "mandates[2].consumer: unknown consumer 'nobody'"),
        ('purposes = ["student-aid"]', 'purposes = ["gossip"]', "mandates[0].purposes: unknown purpose 'gossip'"),
        (
            'contract = "registry.tax.v1.TaxRegistry"',
            'contract = "registry.tax.v9.TaxRegistry"',
            "registries[2].contract",
        ),
        ('adapter = "grpc"', 'adapter = "soap"', "registries[0].adapter"),
        ("rest_port = 8080", "rest_port = 99999", "gateway.rest_port"),
        (
            'categories = ["INCOME"',
            'categories = ["SHOE"',
            "no field of registry.tax.v1.IncomeCertificate has category 'SHOE'",
        ),
        (
            'issuer = "demo-agencies"\nclient_id = "cedies"',
            'issuer = "nowhere"\nclient_id = "cedies"',
            "consumers[0].issuer",
        ),
        ("[[purposes]]", "[[porpoises]]", "porpoises"),
    ],
)
def test_invalid_configuration_names_the_key_and_why(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert expected in broken(tmp_path, old, new)


def test_unreadable_and_malformed_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
