"""The files a configuration names, checked before anything starts.

A missing or unreadable key, JWKS file, certificate or store folder is one line
naming the key at fault and the resolved path, e.g.
``issuers[0].jwks_file: cannot read /etc/passerelle/agencies.jwks.json: No such file or directory``,
instead of a traceback from deep inside start-up.
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.config import Config

__all__ = ["file_problems"]


def _readable(key: str, path: Path) -> list[str]:
    try:
        with path.open("rb") as f:
            empty = not f.read(1)
    except IsADirectoryError:
        return [f"{key}: {path} is a folder, not a file"]
    except OSError as exc:
        return [f"{key}: cannot read {path}: {exc.strerror}"]
    return [f"{key}: {path} is empty"] if empty else []


def _store_folder(key: str, dsn: str, config: Config) -> list[str]:
    if not dsn.startswith("sqlite:"):
        return []   # a database server: checked when the store connects
    path = config.path(dsn.removeprefix("sqlite:")).resolve()
    folder = path.parent
    if not folder.is_dir():
        return [f"{key}: the folder of {path} does not exist"]
    target = path if path.exists() else folder
    if not os.access(target, os.R_OK | os.W_OK):
        return [f"{key}: {target} is not readable and writable by this user"]
    return []


def file_problems(config: Config) -> list[str]:
    """Every named file that cannot be used, one line each (empty: all present and readable)."""
    g = config.gateway
    out = _readable("gateway.pseudonym_key", config.path(g.pseudonym_key))
    for n, issuer in enumerate(config.issuers):
        if issuer.jwks_file:
            out += _readable(f"issuers[{n}].jwks_file", config.path(issuer.jwks_file))
    if g.tls is not None:
        for name in ("cert", "key", "client_ca"):
            value = getattr(g.tls, name)
            if value:
                out += _readable(f"gateway.tls.{name}", config.path(value))
    keys = getattr(g, "keys", None)
    if keys is not None:
        if keys.module:
            out += _readable("gateway.keys.module", config.path(keys.module))
            if keys.pin_file:
                out += _readable("gateway.keys.pin_file", config.path(keys.pin_file))
        else:
            out += _readable("gateway.keys.checkpoint_file", config.path(keys.checkpoint_file))
            out += _readable("gateway.keys.receipt_file", config.path(keys.receipt_file))
    for name in ("audit", "consents", "revocations"):
        out += _store_folder(f"gateway.{name}", getattr(g, name), config)
    return out
