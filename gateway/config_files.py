"""What a configuration names, checked before anything starts.

A key, JWKS file, certificate, store or witness key that cannot be used is one
line naming the key at fault and the resolved path, e.g.
``issuers[0].jwks_file: cannot read /etc/passerelle/agencies.jwks.json: No such file or directory``,
instead of a traceback from deep inside start-up. Checked here: each file is
readable and holds what its key says (JSON key set, PEM key of the right type,
certificate and matching private key, SQLite database), each store names a known
scheme and each PostgreSQL server answers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from gateway.config import Config
from gateway.config_tls import tls_problems

__all__ = ["STORE_SCHEMES", "StartupError", "file_problems", "redact_dsn", "store_problems"]

STORE_SCHEMES = ("sqlite:", "postgresql://", "postgres://")
_SQLITE_HEADER = b"SQLite format 3\x00"
PG_CONNECT_TIMEOUT_S = 5


class StartupError(Exception):
    """The gateway cannot start; the message is one line, naming the key and path when known (exit code 2)."""


def _read(key: str, path: Path) -> tuple[bytes | None, list[str]]:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        return None, [f"{key}: {path} is a folder, not a file"]
    except OSError as exc:
        return None, [f"{key}: cannot read {path}: {exc.strerror}"]
    return (data, []) if data else (None, [f"{key}: {path} is empty"])


def _readable(key: str, path: Path) -> list[str]:
    return _read(key, path)[1]


def _jwks(key: str, path: Path) -> list[str]:
    data, problems = _read(key, path)
    if data is None:
        return problems
    try:
        keys = json.loads(data).get("keys")
    except (ValueError, AttributeError) as exc:
        return [f"{key}: {path} is not a JSON key set ({{\"keys\": [...]}}): {str(exc).splitlines()[0]}"]
    return [] if isinstance(keys, list) else [f"{key}: {path} is not a JSON key set: no \"keys\" list"]


def _private_key(key: str, path: Path, expected: str, fits: Callable[[object], bool]) -> list[str]:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data, problems = _read(key, path)
    if data is None:
        return problems
    try:
        private = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        return [f"{key}: {path} is not an unencrypted PEM private key"]
    kind = type(private).__name__.lstrip("_").removesuffix("PrivateKey")
    return [] if fits(private) else [f"{key}: {path} holds a private key of type {kind}, not {expected}"]


def _signing_keys(config: Config) -> list[str]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    keys = config.gateway.keys
    if keys.module:
        out = _readable("gateway.keys.module", config.path(keys.module))
        return out + (_readable("gateway.keys.pin_file", config.path(keys.pin_file)) if keys.pin_file else [])
    return _private_key("gateway.keys.checkpoint_file", config.path(keys.checkpoint_file), "an Ed25519 key",
                        lambda k: isinstance(k, ed25519.Ed25519PrivateKey)) + _private_key(
        "gateway.keys.receipt_file", config.path(keys.receipt_file), "a P-256 (EC secp256r1) key",
        lambda k: isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == "secp256r1")  # fmt: skip


def redact_dsn(dsn: str) -> str:
    """A DSN fit for a message: no password."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _postgres(key: str, dsn: str, answered: dict[str, str]) -> list[str]:
    if dsn not in answered:
        import psycopg

        try:
            psycopg.connect(dsn, connect_timeout=PG_CONNECT_TIMEOUT_S).close()
            answered[dsn] = ""
        except (psycopg.Error, ValueError) as exc:
            answered[dsn] = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    problem = answered[dsn]
    return [f"{key}: cannot connect to PostgreSQL at {redact_dsn(dsn)}: {problem}"] if problem else []


def _sqlite(key: str, path: Path, write: bool = True) -> list[str]:
    if path.is_dir():
        return [f"{key}: {path} is a folder, not a SQLite database file"]
    folder = path.parent
    if not folder.is_dir():
        return [f"{key}: the folder of {path} does not exist"]
    target = path if path.exists() else folder
    if not write:
        return [] if not path.exists() or os.access(path, os.R_OK) else [f"{key}: {path} is not readable by this user"]
    if not os.access(target, os.R_OK | os.W_OK) or (target is path and not os.access(folder, os.W_OK)):
        return [f"{key}: {target if target is path else folder} is not readable and writable by this user"]
    if path.exists():
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_HEADER))
        if head and head != _SQLITE_HEADER:
            return [f"{key}: {path} is not a SQLite database"]
    return []


def _store(key: str, dsn: str, config: Config, answered: dict[str, str], write: bool = True) -> list[str]:
    if dsn.startswith(("postgresql://", "postgres://")):
        return _postgres(key, dsn, answered)
    if not dsn.startswith("sqlite:"):
        return [f"{key}: {redact_dsn(dsn)!r} is neither \"sqlite:FILE\" nor a postgresql:// DSN"]
    return _sqlite(key, config.path(dsn.removeprefix("sqlite:")).resolve(), write)


def _stores(config: Config) -> list[str]:
    g = config.gateway
    answered: dict[str, str] = {}
    out: list[str] = []
    for name in ("audit", "consents", "revocations"):
        out += _store(f"gateway.{name}", getattr(g, name), config, answered)
    if g.dpop_replay not in ("", "memory"):
        out += _store("gateway.dpop_replay", g.dpop_replay, config, answered)
    if g.quotas not in ("", "local"):
        out += _postgres("gateway.quotas", g.quotas, answered) if g.quotas.startswith(STORE_SCHEMES[1:]) else [
            f"gateway.quotas: {redact_dsn(g.quotas)!r} is neither \"local\" nor a postgresql:// DSN"]
    return out


def store_problems(config: Config, *names: str) -> list[str]:
    """The named stores of ``[gateway]`` (``"audit"``, ``"consents"``...) that cannot be read, one line each."""
    answered: dict[str, str] = {}
    return [p for name in names
            for p in _store(f"gateway.{name}", getattr(config.gateway, name), config, answered, write=False)]


def _witnesses(config: Config) -> list[str]:
    from adapters.witness.cosignatures import witness_key

    out = []
    for n, w in enumerate(config.witnesses):
        try:
            witness_key(w.name, w.url, w.public_key)
        except ValueError as exc:
            out.append(f"witnesses[{n}].public_key: {exc}")
    return out


def file_problems(config: Config) -> list[str]:
    """Every named file, store or key that cannot be used, one line each (empty: all usable)."""
    g = config.gateway
    out = _readable("gateway.pseudonym_key", config.path(g.pseudonym_key))
    for n, issuer in enumerate(config.issuers):
        if issuer.jwks_file:
            out += _jwks(f"issuers[{n}].jwks_file", config.path(issuer.jwks_file))
    if g.tls is not None:
        out += tls_problems(g.tls, config.path)
    return out + _signing_keys(config) + _stores(config) + _witnesses(config) + _citizen_login(config)


def _citizen_login(config: Config) -> list[str]:
    """The relying party's private_key_jwt key and its session store, when ``[citizen_login]`` names them."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    login = config.citizen_login
    if login is None:
        return []
    out: list[str] = []
    if login.private_key_file:
        kinds = {"E": (ec.EllipticCurvePrivateKey, "an EC key"), "R": (rsa.RSAPrivateKey, "an RSA key"),
                 "P": (rsa.RSAPrivateKey, "an RSA key")}  # fmt: skip
        kind, expected = kinds.get(login.private_key_alg[0], (ed25519.Ed25519PrivateKey, "an Ed25519 key"))
        out += _private_key("citizen_login.private_key_file", config.path(login.private_key_file),
                            f"{expected} ({login.private_key_alg})", lambda k: isinstance(k, kind))  # fmt: skip
    if login.sessions not in ("", "memory"):
        out += _store("citizen_login.sessions", login.sessions, config, {})
    return out
