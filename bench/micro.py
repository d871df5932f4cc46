"""In-process micro benchmarks: token verification with and without the cache."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gateway.bootstrap import load_issuers
from gateway.config import load_config
from gateway.core.auth import TokenVerifier
from gateway.demo.setup import demo_token, ensure_demo

__all__ = ["token_verification"]


def _rate(fn: Any, n: int) -> dict[str, float]:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    elapsed = time.perf_counter() - start
    return {"per_s": round(n / elapsed), "us_each": round(elapsed / n * 1e6, 2)}


def token_verification(data_dir: Path, n_cached: int = 200_000, n_uncached: int = 3_000) -> dict[str, Any]:
    """``verify`` on one repeated token (cache hit) and ``_verify_uncached`` (full ES256 check)."""
    config = load_config(ensure_demo(data_dir))
    gw = config.gateway
    verifier = TokenVerifier(
        load_issuers(config), {(c.issuer, c.client_id): c.id for c in config.consumers}, audience=gw.audience,
        max_lifetime_s=gw.token_max_lifetime_s, leeway_s=gw.token_leeway_s, clock=time.time,
    )  # fmt: skip
    token = demo_token(data_dir, issuer_id="demo-agencies", subject="cedies", scope="exchange")
    verifier.verify(token)
    return {
        "algorithm": "ES256",
        "cached": _rate(lambda: verifier.verify(token), n_cached),
        "uncached": _rate(lambda: verifier._verify_uncached(token, time.time()), n_uncached),
    }
