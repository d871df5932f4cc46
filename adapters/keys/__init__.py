"""Issuer verification keys: JWKS from a file (reloaded on change) or a URL (fetched with httpx, cached)."""

from adapters.keys.jwks import JwksFileKeys, JwksUrlKeys, parse_jwks

__all__ = ["JwksFileKeys", "JwksUrlKeys", "parse_jwks"]
