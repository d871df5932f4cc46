"""``[citizen_login]``: the README's example loads; each mistake is one line naming the key and the file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.config_citizen_login import CitizenLoginSection
from gateway.demo.setup import ensure_demo

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_example_is_a_valid_section() -> None:
    block = re.search(r"```toml\n(\[citizen_login\].*?)```", README.read_text(), re.S)
    assert block, "README: no [citizen_login] example"
    section = CitizenLoginSection.model_validate(tomllib.loads(block.group(1))["citizen_login"])
    assert section.secure_cookie and section.subject_claim == "sub"


def _with(tmp_path: Path, body: str) -> Path:
    path = ensure_demo(tmp_path)
    path.write_text(path.read_text() + "\n[citizen_login]\n" + body)
    return path


GOOD = ('issuer = "https://eid.example.lu"\nclient_id = "page"\nclient_secret = "s"\n'
        'public_url = "https://passerelle.example.lu"\n')  # fmt: skip


def test_a_complete_section_loads_and_the_cookie_is_secure(tmp_path: Path) -> None:
    config = load_config(_with(tmp_path, GOOD))
    assert config.citizen_login is not None and config.citizen_login.secure_cookie


@pytest.mark.parametrize(("body", "key", "words"), [
    (GOOD.replace("https://eid", "http://eid"), "citizen_login.issuer", "must be https://"),
    (GOOD.replace('"https://passerelle.example.lu"', '"https://passerelle.example.lu/gw"'), "citizen_login.public_url",
     "no path"),
    (GOOD.replace('client_secret = "s"\n', ""), "citizen_login", "exactly one of client_secret or private_key_file"),
    (GOOD + 'private_key_file = "k.pem"\n', "citizen_login", "exactly one of"),
    (GOOD + 'scopes = ["profile"]\n', "citizen_login.scopes", "'openid'"),
    (GOOD + "session_idle_timeout_s = 7200\nsession_absolute_timeout_s = 3600\n", "citizen_login",
     "at least session_idle_timeout_s"),
    (GOOD + "colour = 1\n", "citizen_login.colour", "Extra inputs"),
])  # fmt: skip
def test_a_mistake_is_one_line_naming_the_key_and_the_file(tmp_path: Path, body: str, key: str, words: str) -> None:
    path = _with(tmp_path, body)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    [line] = str(refused.value).splitlines()
    assert line.startswith(f"{path}: {key}") and words in line, line


def test_a_plain_http_public_url_is_accepted_on_loopback_only_and_then_not_secure(tmp_path: Path) -> None:
    body = GOOD.replace('"https://passerelle.example.lu"', '"http://127.0.0.1:8080"')
    config = load_config(_with(tmp_path, body))
    assert config.citizen_login is not None and not config.citizen_login.secure_cookie


def test_a_private_key_file_that_cannot_be_used_is_one_line_naming_it(tmp_path: Path) -> None:
    from gateway.config_files import file_problems

    body = GOOD.replace('client_secret = "s"\n', 'private_key_file = "keys/rp.pem"\nprivate_key_alg = "RS256"\n')
    config = load_config(_with(tmp_path, body))
    assert [p for p in file_problems(config) if p.startswith("citizen_login")] == [
        f"citizen_login.private_key_file: cannot read {tmp_path / 'keys' / 'rp.pem'}: No such file or directory"]
    (tmp_path / "keys" / "rp.pem").write_bytes((tmp_path / "demo-signing-keys" / "receipt-p256.pem").read_bytes())
    [problem] = [p for p in file_problems(config) if p.startswith("citizen_login")]
    assert problem.endswith("rp.pem holds a private key of type EC, not an RSA key (RS256)")
