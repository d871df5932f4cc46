"""Live JWKS key sets for the token verifier.

Both sets answer lookups from memory (the hot path does no I/O) and refresh:

* ``JwksFileKeys`` re-reads its file when the file changes (checked at most
  once per ``check_interval_s``) or when a token names an unknown ``kid``;
* ``JwksUrlKeys`` fetches with httpx, holds the document as fresh for ``ttl_s``
  (a cachetools TTLCache) and refreshes in the background once stale; a token
  with an unknown ``kid`` triggers at most one refresh per ``min_refresh_s``,
  single-flight, however many such tokens arrive.

Rotation: publish the new key next to the old one, start signing with it, and
remove the old key once its last tokens expired (the token lifetime). A key
removed from the set is refused at once, cached tokens included.
A set that cannot be read or fetched keeps its last good keys (and says so in
the log); keys with private members, unknown types or short RSA moduli are
never loaded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt
from cachetools import TTLCache
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

__all__ = ["JwksFileKeys", "JwksUrlKeys", "parse_jwks"]

_log = logging.getLogger("passerelle.keys")
_PRIVATE = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})
MIN_RSA_BITS = 2048
MAX_JWKS_BYTES = 256 * 1024


def _acceptable(key: Any) -> bool:
    if isinstance(key, rsa.RSAPublicKey):
        return key.key_size >= MIN_RSA_BITS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.name in ("secp256r1", "secp384r1")
    return isinstance(key, ed25519.Ed25519PublicKey)


def parse_jwks(document: object, *, source: str = "") -> dict[str, Any]:
    """``kid`` -> public key, for the usable signing keys of a JWKS document."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError(f"{source}: not a JWKS document (no 'keys' list)")
    keys: dict[str, Any] = {}
    for n, jwk in enumerate(document["keys"]):
        kid = jwk.get("kid") if isinstance(jwk, dict) else None
        why = ""
        if not isinstance(kid, str) or not kid:
            why = "no kid"
        elif _PRIVATE & set(jwk):
            why = "holds private key material"
        elif jwk.get("use", "sig") != "sig" or jwk.get("kty") == "oct":
            why = "not a public signing key"
        if not why:
            try:
                key = jwt.PyJWK(jwk).key
            except (jwt.exceptions.PyJWTError, ValueError, TypeError):
                key, why = None, "cannot be parsed"
            if key is not None and not _acceptable(key):
                why = "key type or size not allowed"
        if why:
            _log.warning("jwks key skipped", extra={"fields": {"source": source, "index": n, "why": why}})
            continue
        keys[str(kid)] = key
    return keys


class _LiveKeys(Mapping[str, Any]):
    _keys: dict[str, Any]

    def _current(self) -> dict[str, Any]:
        return self._keys

    def __getitem__(self, kid: str) -> Any:
        return self._current()[kid]

    def __contains__(self, kid: object) -> bool:
        return kid in self._current()

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def get(self, kid: str, default: Any = None) -> Any:
        return self._current().get(kid, default)


class JwksFileKeys(_LiveKeys):
    """A JWKS file, re-read when it changes."""

    def __init__(
        self, path: Path, *, check_interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path, self._interval, self._clock = path, check_interval_s, clock
        self._stamp: tuple[int, int] | None = None
        self._checked = -1e18
        self._keys = {}
        self.reloads = 0
        self._reload(force=True)
        if not self._keys and self._stamp is None:
            raise FileNotFoundError(f"JWKS file not found: {path}")

    def _current(self) -> dict[str, Any]:
        if self._clock() - self._checked >= self._interval:
            self._reload()
        return self._keys

    def _reload(self, *, force: bool = False) -> bool:
        self._checked = self._clock()
        try:
            st = self.path.stat()
        except OSError:
            return False
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp and not force:
            return False
        try:
            keys = parse_jwks(json.loads(self.path.read_text()), source=str(self.path))
        except (OSError, ValueError) as exc:
            _log.error("jwks file unreadable; keeping last good keys",
                       extra={"fields": {"source": str(self.path), "error": type(exc).__name__}})
            return False
        self._stamp = stamp
        changed = keys.keys() != self._keys.keys() or any(keys[k] != self._keys[k] for k in keys)
        self._keys = keys
        self.reloads += 1
        return changed

    def request_refresh(self) -> None:
        self._reload()

    async def refresh(self) -> bool:
        return self._reload()


class JwksUrlKeys(_LiveKeys):
    """A JWKS URL of an identity provider, fetched asynchronously and cached."""

    def __init__(
        self, url: str, *, client: httpx.AsyncClient | None = None, ttl_s: float = 300.0,
        min_refresh_s: float = 30.0, timeout_s: float = 5.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._owns_client = client is None
        self.url, self._client, self._timeout = url, client or httpx.AsyncClient(), timeout_s
        self._min_refresh, self._clock = min_refresh_s, clock
        self._fresh: TTLCache[str, bool] = TTLCache(maxsize=1, ttl=ttl_s, timer=clock)
        self._keys = {}
        self._last_attempt = -1e18
        self._inflight: asyncio.Task[bool] | None = None
        self.fetches = 0

    def _current(self) -> dict[str, Any]:
        if self.url not in self._fresh:
            self.request_refresh()
        return self._keys

    def request_refresh(self) -> None:
        if self._inflight is not None or self._clock() - self._last_attempt < self._min_refresh:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._start(loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[bool]:
        self._last_attempt = self._clock()
        task = loop.create_task(self._fetch())
        self._inflight = task
        task.add_done_callback(lambda _t: setattr(self, "_inflight", None))
        return task

    async def refresh(self) -> bool:
        """Single-flight and rate-limited: at most one fetch per ``min_refresh_s``."""
        if self._inflight is not None:
            return await asyncio.shield(self._inflight)
        if self._clock() - self._last_attempt < self._min_refresh:
            return False
        return await self._start(asyncio.get_running_loop())

    async def _fetch(self) -> bool:
        self.fetches += 1
        try:
            response = await self._client.get(self.url, timeout=self._timeout, headers={"accept": "application/json"})
            if response.status_code != 200 or len(response.content) > MAX_JWKS_BYTES:
                raise ValueError(f"HTTP {response.status_code}, {len(response.content)} bytes")
            keys = parse_jwks(response.json(), source=self.url)
        except (httpx.HTTPError, ValueError) as exc:
            _log.error("jwks fetch failed; keeping last good keys",
                       extra={"fields": {"source": self.url, "error": type(exc).__name__}})
            return False
        self._fresh[self.url] = True
        changed = keys.keys() != self._keys.keys() or any(keys[k] != self._keys[k] for k in keys)
        self._keys = keys
        return changed

    async def close(self) -> None:
        if self._inflight is not None:
            self._inflight.cancel()
        if self._owns_client:
            await self._client.aclose()
