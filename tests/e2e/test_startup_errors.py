"""Whatever stops ``gateway serve --config`` from starting is one line naming the key and the path, exit code 2.

Each case is a demo set-up broken one way, run as a person runs it (a real process), so that
nothing is hidden by an in-process runner: no traceback, no C-core lines, nothing else on stderr.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.demo.setup import ensure_demo
from gateway.entrypoints.single_instance import InstanceConflict, check_ports_free

TLS_OFF = '# [gateway.tls]\n# port = 50052\n# cert = "keys/tls/server.pem"\n# key = "keys/tls/server.key"\n' \
          '# client_ca = "keys/tls/ca.pem"'
TLS_ON = '[gateway.tls]\nport = 0\ncert = "keys/tls/server.pem"\nkey = "keys/tls/server.key"\n' \
         'client_ca = "keys/tls/ca.pem"'
ROOT = os.geteuid() == 0


def _write(relative: str, data: bytes) -> Callable[[Path], object]:
    return lambda d: (d / relative).write_bytes(data)


def _copy(source: str, target: str) -> Callable[[Path], object]:
    return lambda d: shutil.copy(d / source, d / target)


def _read_only_folder(d: Path) -> None:
    (d / "ro").mkdir()
    os.chmod(d / "ro", 0o555)


# Per case: text replaced in gateway.toml, its replacement, preparation, env, extra args, expected in the line.
Case = tuple[str | None, str | None, Callable[[Path], object] | None, dict[str, str], list[str], list[str]]
CASES: dict[str, Case] = {
    "jwks-not-json": (None, None, _write("keys/demo-agencies.jwks.json", b"{not json"), {}, [],
                      ["issuers[0].jwks_file", "keys/demo-agencies.jwks.json", "not a JSON key set"]),
    "signing-key-garbage": (None, None, _write("demo-signing-keys/checkpoint-ed25519.pem", b"garbage"), {}, [],
                            ["gateway.keys.checkpoint_file", "checkpoint-ed25519.pem", "PEM private key"]),
    "signing-key-wrong-type": (None, None, _copy("demo-signing-keys/receipt-p256.pem",
                                                 "demo-signing-keys/checkpoint-ed25519.pem"), {}, [],
                               ["gateway.keys.checkpoint_file", "checkpoint-ed25519.pem", "not an Ed25519 key"]),
    "audit-a-folder": ('audit = "sqlite:audit.db"', 'audit = "sqlite:keys"', None, {}, [],
                       ["gateway.audit", "/keys", "is a folder"]),
    "audit-unknown-scheme": ('audit = "sqlite:audit.db"', 'audit = "mysql://x/y"', None, {}, [],
                             ["gateway.audit", "mysql://x/y", "neither"]),
    "audit-postgres-down": ('audit = "sqlite:audit.db"', 'audit = "postgresql://u:secret@127.0.0.1:1/db"', None, {},
                            [], ["gateway.audit", "postgresql://u:***@127.0.0.1:1/db", "cannot connect"]),
    "audit-not-a-database": (None, None, _write("audit.db", b"not a database " * 100), {}, [],
                             ["gateway.audit", "audit.db", "not a SQLite database"]),
    "consents-unwritable": ('consents = "sqlite:consents.db"', 'consents = "sqlite:ro/consents.db"',
                            _read_only_folder, {}, [], ["gateway.consents", "/ro", "writable"]),
    "not-utf-8": ("(demo)", "(d\udce9mo)", None, {}, [], ["gateway.toml", "not UTF-8"]),
    "witness-key": ("[gateway]\n", '[[witnesses]]\nname = "w"\nurl = "http://127.0.0.1:1"\npublic_key = "notakey"\n\n'
                    "[gateway]\n", None, {}, [], ["witnesses[0].public_key"]),
    "log-level-bogus": (None, None, None, {"PASSERELLE_LOG_LEVEL": "bogus"}, [], ["PASSERELLE_LOG_LEVEL", "bogus"]),
    "rest-port-too-big": (None, None, None, {}, ["--rest-port", "99999"], ["--rest-port", "99999"]),
    "privileged-port": (None, None, None, {}, ["--rest-port", "80"], ["REST 127.0.0.1:80", "permission denied"]),
    "tls-ca-garbage": (TLS_OFF, TLS_ON, _write("keys/tls/ca.pem", b"garbage"), {}, [],
                       ["gateway.tls.client_ca", "keys/tls/ca.pem", "no PEM certificate"]),
    "tls-key-not-the-certificate's": (TLS_OFF, TLS_ON.replace("server.key", "cedies.key"), None, {}, [],
                                      ["gateway.tls.key", "keys/tls/cedies.key", "keys/tls/server.pem"]),
    "type-error": ("rate_per_s = 1000", 'rate_per_s = "fast"', None, {}, [], ["gateway.rate_per_s"]),
}
AS_ROOT_THIS_WORKS = {"consents-unwritable", "privileged-port"}


@pytest.fixture(scope="module")
def demo_set_up(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_demo(tmp_path_factory.mktemp("base")).parent


@pytest.mark.parametrize("name", list(CASES))
def test_a_start_up_failure_is_one_line_naming_the_key_and_the_path_with_exit_code_2(
    demo_set_up: Path, tmp_path: Path, name: str
) -> None:
    if name in AS_ROOT_THIS_WORKS and ROOT:
        pytest.skip("root may write anywhere and bind any port")
    old, new, prepare, env, args, expected = CASES[name]
    folder = tmp_path / "case"
    shutil.copytree(demo_set_up, folder)
    config = folder / "gateway.toml"
    if old is not None:
        text = config.read_text()
        assert old in text and new is not None
        config.write_bytes(text.replace(old, new, 1).encode("utf-8", "surrogateescape"))
    if prepare is not None:
        prepare(folder)
    result = subprocess.run(
        [sys.executable, "-m", "gateway.entrypoints.cli", "serve", "--config", str(config), "--rest-port", "0",
         "--grpc-port", "0", *args], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **env},
    )  # fmt: skip
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1, result.stderr[-3000:]
    for part in expected:
        assert part in lines[0]


def test_the_log_level_is_read_in_any_case() -> None:
    from observability.logs import log_level

    assert log_level("debug") == log_level("DEBUG") == 10


def test_a_privileged_port_is_refused_naming_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a non-root user sees for ``--rest-port 80`` (the test may run as root, where binding works)."""

    class NotAllowed(socket.socket):
        def bind(self, address: object) -> None:
            raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("gateway.entrypoints.single_instance.socket.socket", NotAllowed)
    with pytest.raises(InstanceConflict, match=r"REST 127\.0\.0\.1:80: permission denied"):
        check_ports_free([("REST", "127.0.0.1", 80)])


def test_each_validation_problem_is_one_line_naming_the_file_and_the_key(tmp_path: Path) -> None:
    from gateway.config import ConfigError, load_config

    config = ensure_demo(tmp_path)
    config.write_text(config.read_text().replace("rate_per_s = 1000", 'rate_per_s = "fast"\nbogus = 1', 1))
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    lines = str(caught.value).splitlines()
    assert [line.split(": ")[:2] for line in lines] == [[str(config), "gateway.rate_per_s"],
                                                        [str(config), "gateway.bogus"]]  # fmt: skip


def test_an_empty_configuration_says_what_it_lacks_first(tmp_path: Path) -> None:
    from gateway.config import ConfigError, load_config

    empty = tmp_path / "gateway.toml"
    empty.write_text("")
    with pytest.raises(ConfigError) as caught:
        load_config(empty)
    assert str(caught.value).splitlines()[0] == (
        f"{empty}: registries: none configured ([[registries]]): the gateway would have nothing to serve")
