"""Configuration errors name the bad key; the error table is complete."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

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


# --- What `gateway ...` tells a person: one line naming the key and the path, exit code 2 ---------------------

def _cli(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from gateway.entrypoints.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _demo_config_with(tmp_path: Path, old: str, new: str) -> Path:
    path = ensure_demo(tmp_path)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "key", "missing"),
    [
        ('jwks_file = "keys/demo-agencies.jwks.json"', 'jwks_file = "keys/gone.jwks.json"',
         "issuers[0].jwks_file", "keys/gone.jwks.json"),
        ('pseudonym_key = "keys/pseudonym.key"', 'pseudonym_key = "keys/nowhere.key"',
         "gateway.pseudonym_key", "keys/nowhere.key"),
        ('audit = "sqlite:audit.db"', 'audit = "sqlite:no-such-folder/audit.db"',
         "gateway.audit", "no-such-folder/audit.db"),
        ("[gateway]\n", '[gateway]\ntls = { cert = "keys/tls/absent.pem", key = "keys/tls/absent.key" }\n',
         "gateway.tls.cert", "keys/tls/absent.pem"),
    ],
)  # fmt: skip
def test_a_missing_file_is_one_line_naming_the_key_and_the_path_and_exit_code_2(
    tmp_path: Path, old: str, new: str, key: str, missing: str
) -> None:
    config = _demo_config_with(tmp_path, old, new)
    code, output = _cli("serve", "--config", str(config))
    assert code == 2
    lines = [line for line in output.splitlines() if key in line]
    assert len(lines) == 1, output
    assert str((tmp_path / missing).resolve()) in lines[0]
    assert "Traceback" not in output


def test_token_refuses_a_folder_without_demo_set_up_and_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-demo"
    code, output = _cli("token", "--consumer", "cedies", "--data-dir", str(empty))
    assert code == 2
    assert "serve --demo" in output
    assert not empty.exists()


def test_verify_receipt_without_a_reachable_gateway_says_how_to_pass_the_key_set(tmp_path: Path) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    receipt = tmp_path / "consent.json"
    receipt.write_text('{"receipt": "x.y.z"}')
    code, output = _cli("consent", "verify-receipt", str(receipt), "--jwks", f"http://127.0.0.1:{port}/jwks.json")
    assert code == 2
    assert "--jwks FILE" in output and "Traceback" not in output


def test_report_takes_data_dir_like_the_other_subcommands(tmp_path: Path) -> None:
    code, output = _cli("report", "--from", "2026-01-01", "--to", "2027-01-01", "--output", str(tmp_path / "r.json"),
                        "--data-dir", str(tmp_path / "elsewhere"))  # fmt: skip
    assert code == 2
    assert f"no configuration at {tmp_path / 'elsewhere' / 'gateway.toml'}" in output


def _commands(command: Any, path: str = "gateway") -> list[tuple[str, Any]]:
    out = [(path, command)]
    if hasattr(command, "commands"):   # a group (typer may carry its own copy of click: no isinstance)
        for name, sub in command.commands.items():
            out += _commands(sub, f"{path} {name}")
    return out


#: What a help page must not show: reST/markdown quoting, rich markup, Python type reprs as metavars,
#: a group's "COMMAND [ARGS]" on a command without subcommands, a lower-case {placeholder} as an argument.
_ARTEFACTS = re.compile(r"`|\[/|\[bold|<bool>|<list\[|<dict\[|\{[a-z_]+\}")


def test_every_option_of_every_command_is_described_without_markup() -> None:
    import typer

    from gateway.entrypoints.cli import app

    undescribed, markup = [], []
    for path, command in _commands(typer.main.get_command(app)):
        for param in command.params:
            if param.param_type_name in ("option", "argument") and not getattr(param, "help", None):
                undescribed.append(f"{path} {param.name}")
        code, output = _cli(*path.split()[1:], "--help")
        assert code == 0, output
        markup += [f"{path}: {line.strip()}" for line in output.splitlines() if _ARTEFACTS.search(line)]
        if "COMMAND [ARGS]" in output and not getattr(command, "commands", None):
            markup.append(f"{path}: usage shows COMMAND [ARGS] without subcommands")
    assert undescribed == []
    assert markup == []


def test_gateway_version_prints_the_package_version() -> None:
    code, output = _cli("--version")
    assert code == 0
    assert output.startswith("passerelle ")


def test_every_option_of_the_benchmark_is_described_without_markup() -> None:
    from bench.__main__ import build_parser

    parser = build_parser()
    undescribed = [a.option_strings[0] for a in parser._actions if a.option_strings and not a.help]
    text = parser.format_help()
    assert undescribed == []
    assert [line for line in text.splitlines() if _ARTEFACTS.search(line)] == []


# --- Demo tokens: the right folder, one caller, a lifetime that makes sense ----------------------------------

def test_security_token_refuses_a_folder_without_demo_set_up_and_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-demo"
    code, output = _cli("security", "token", "--consumer", "cedies", "--dpop-key", "k.pem", "--data-dir", str(empty))
    assert code == 2
    assert "serve --demo" in output
    assert not empty.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--consumer", "cedies", "--admin"], "--consumer and --admin: a token is for one caller"),
        (["--citizen", "1991062434054", "--ops"], "--citizen and --ops: a token is for one caller"),
        (["--admin", "--ttl", "-5"], "--ttl: -5 is not a lifetime"),
        (["--admin", "--ttl", "0"], "--ttl: 0 is not a lifetime"),
    ],
)
def test_token_refuses_contradictory_or_invalid_options_in_one_line(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    config = ensure_demo(tmp_path)
    code, output = _cli("token", *args, "--config", str(config))
    assert code == 2
    assert output.strip().splitlines() == [output.strip()] and expected in output


def test_token_config_names_the_demo_folder_like_data_dir(tmp_path: Path) -> None:
    config = ensure_demo(tmp_path)
    code, output = _cli("token", "--consumer", "cedies", "--config", str(config))
    assert code == 0 and output.count(".") == 2


def test_verify_receipt_takes_the_key_set_from_the_local_configuration(tmp_path: Path) -> None:
    from adapters.keys.signing import make_receipt_key
    from gateway.application.receipts import ReceiptSigner
    from gateway.config import load_config

    config = ensure_demo(tmp_path)
    signer = ReceiptSigner(make_receipt_key(load_config(config)), issuer="urn:test")
    receipt = tmp_path / "consent.json"
    receipt.write_text(json.dumps({"receipt": signer.sign({"consentReceiptID": "c-1"})}))
    for option, value in (("--config", str(config)), ("--data-dir", str(tmp_path))):
        code, output = _cli("consent", "verify-receipt", str(receipt), option, value)
        assert code == 0, output
        assert "VALID: receipt c-1" in output
